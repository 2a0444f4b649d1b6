"""Fault injection: seeded decisions, the management endpoint, and what clients see."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from lambdakit.local.faults import FaultInjector, FaultSettings
from tests.local.test_local_api import ECHO, message_of, raw


def outcomes(injector: FaultInjector, name: str, n: int) -> list[str]:
    kinds = []
    for _ in range(n):
        decision = injector.decide(name)
        assert decision is not None
        kinds.append("throttle" if decision.throttle else "error" if decision.error else "ok")
    return kinds


def test_no_settings_means_no_faults():
    assert FaultInjector(seed=1).decide("anything") is None


def test_seeded_decisions_repeat_and_follow_the_rates():
    settings = FaultSettings(throttle_rate=0.3, error_rate=0.2, seed=11)
    first, second = FaultInjector(), FaultInjector()
    first.set("fn", settings)
    second.set("fn", settings)
    kinds = outcomes(first, "fn", 2_000)
    assert kinds == outcomes(second, "fn", 2_000)
    # Throttle 0.3; error 0.2 of the rest (0.14 overall). sd is about 0.01 for both.
    assert 0.25 < kinds.count("throttle") / 2_000 < 0.35
    assert 0.10 < kinds.count("error") / 2_000 < 0.18
    other = FaultInjector()
    other.set("other-fn", settings)
    assert outcomes(other, "other-fn", 200) != kinds[:200]


def test_server_seed_applies_when_settings_have_none():
    one, two = FaultInjector(seed=3), FaultInjector(seed=3)
    for injector in (one, two):
        injector.set("fn", FaultSettings(throttle_rate=0.5))
    assert outcomes(one, "fn", 100) == outcomes(two, "fn", 100)


@pytest.mark.parametrize(
    "body",
    [{"throttle_rate": 1.5}, {"error_rate": -0.1}, {"latency_ms": -1}, {"seed": "x"},
     {"throttle": 0.1}, {"error_rate": True}, {"throttle_reason": "TooBusy"},
     {"max_rps": 0}, {"max_rps": "fast"}],
)  # fmt: skip
def test_bad_settings_are_refused(body):
    with pytest.raises((ValueError, TypeError)):
        FaultSettings.from_json(body)


def test_endpoint_round_trip(local_lambda, make_function):
    name = make_function(ECHO)
    path = f"/_lambdakit/faults/{name}"
    assert raw(local_lambda, "GET", path)[:3:2] == (200, {})
    body = json.dumps({"throttle_rate": 0.25, "latency_ms": 5, "seed": 2}).encode()
    status, _, settings = raw(local_lambda, "PUT", path, body)
    assert status == 200
    assert settings == {
        "throttle_rate": 0.25, "error_rate": 0.0, "latency_ms": 5, "seed": 2,
        "throttle_reason": "ConcurrentInvocationLimitExceeded", "max_rps": None,
    }  # fmt: skip
    assert raw(local_lambda, "GET", path)[2] == settings
    assert raw(local_lambda, "GET", "/_lambdakit/faults")[2]["Faults"][name] == settings
    assert raw(local_lambda, "DELETE", path)[0] == 204
    assert raw(local_lambda, "GET", path)[2] == {}


def test_endpoint_errors(local_lambda, make_function):
    name = make_function(ECHO)
    status, headers, body = raw(local_lambda, "PUT", "/_lambdakit/faults/nobody", b"{}")
    assert (status, headers["x-amzn-ErrorType"]) == (404, "ResourceNotFoundException")
    absurd = (
        b'{"latency_ms": Infinity}', b'{"latency_ms": NaN}', b'{"error_rate": NaN}',
        b'{"latency_ms": 1e12}', b'{"latency_ms": -1}', b'{"throttle_rate": -Infinity}',
    )  # fmt: skip
    for bad in (b"{oops", b"[1]", b'{"error_rate": 2}', b'{"rate": 1}', *absurd):
        status, headers, body = raw(local_lambda, "PUT", f"/_lambdakit/faults/{name}", bad)
        assert status == 400, bad
        assert message_of(headers, body), bad


def test_clients_see_throttles_and_errors_in_the_seeded_order(
    lambda_client, local_lambda, make_function
):
    name = make_function(ECHO)
    settings = {"throttle_rate": 0.3, "error_rate": 0.3, "seed": 99}
    raw(local_lambda, "PUT", f"/_lambdakit/faults/{name}", json.dumps(settings).encode())
    expected_injector = FaultInjector()
    expected_injector.set(name, FaultSettings(**settings))
    expected = outcomes(expected_injector, name, 40)
    seen = []
    for _ in range(40):
        try:
            response = lambda_client.invoke(FunctionName=name, Payload=b'{"x": 1}')
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "TooManyRequestsException"
            assert exc.response["Reason"] == "ConcurrentInvocationLimitExceeded"
            assert exc.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"]
            seen.append("throttle")
            continue
        assert response["StatusCode"] == 200
        if response.get("FunctionError"):
            assert response["FunctionError"] == "Unhandled"
            assert json.loads(response["Payload"].read())["errorType"] == "Lambdakit.InjectedFault"
            seen.append("error")
        else:
            assert json.loads(response["Payload"].read()) == {"event": {"x": 1}}
            seen.append("ok")
    assert seen == expected
    assert {"throttle", "error", "ok"} <= set(seen)
    raw(local_lambda, "DELETE", f"/_lambdakit/faults/{name}")
    assert lambda_client.invoke(FunctionName=name)["StatusCode"] == 200


def test_injected_throttles_carry_the_chosen_reason(lambda_client, local_lambda, make_function):
    name = make_function(ECHO)
    local_lambda.set_faults(name, throttle_rate=1.0, throttle_reason="CallerRateLimitExceeded")
    with pytest.raises(ClientError) as exc_info:
        lambda_client.invoke(FunctionName=name, Payload=b"{}")
    assert exc_info.value.response["Reason"] == "CallerRateLimitExceeded"
    local_lambda.clear_faults(name)


def test_injected_rate_limit_refuses_what_goes_beyond_it(
    lambda_client, local_lambda, make_function
):
    name = make_function(ECHO)
    # 2 requests/s: four calls in a row cannot all be within it, however slow the machine
    # (they take far less than the second they would need).
    local_lambda.set_faults(name, max_rps=2)
    reasons = []
    for _ in range(4):
        try:
            lambda_client.invoke(FunctionName=name, Payload=b"{}")
            reasons.append(None)
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "TooManyRequestsException"
            reasons.append(exc.response["Reason"])
    assert reasons[:2] == [None, None]
    assert "FunctionInvocationRateLimitExceeded" in reasons
    local_lambda.clear_faults(name)


def test_token_bucket_allows_the_rate_and_no_more():
    from lambdakit.local.rates import RateRules, TokenBucket

    now = [0.0]
    bucket = TokenBucket(10.0, clock=lambda: now[0])
    assert sum(bucket.take() for _ in range(20)) == 10  # a second's worth at once, no more
    now[0] += 0.1
    assert bucket.take() and not bucket.take()
    taken = 0
    for _ in range(100):  # a second, asked every 10 ms: 10 get through
        now[0] += 0.01
        taken += bucket.take()
    assert 9 <= taken <= 11  # (float steps: one either way)
    rules = RateRules(1000.0, clock=lambda: now[0])
    admitted = [rules.admit("fn", reserved=1, injected_rps=None) for _ in range(11)]
    # Reserved concurrency 1: 10 requests/s.
    assert admitted == [None] * 10 + ["ReservedFunctionInvocationRateLimitExceeded"]
    small = RateRules(5.0, clock=lambda: now[0])
    assert [small.admit(f"fn-{i}", None, None) for i in range(6)] == [None] * 5 + [
        "FunctionInvocationRateLimitExceeded"
    ]


def test_local_lambda_fault_helpers(local_lambda, lambda_client, make_function):
    from lambdakit.errors import LocalServiceError

    name = make_function(ECHO)
    settings = local_lambda.set_faults(name, error_rate=1.0, seed=4)
    assert settings == {
        "throttle_rate": 0.0, "error_rate": 1.0, "latency_ms": 0.0, "seed": 4,
        "throttle_reason": "ConcurrentInvocationLimitExceeded", "max_rps": None,
    }  # fmt: skip
    assert local_lambda.faults(name) == settings
    assert lambda_client.invoke(FunctionName=name)["FunctionError"] == "Unhandled"
    local_lambda.clear_faults(name)
    assert local_lambda.faults(name) == {}
    assert "FunctionError" not in lambda_client.invoke(FunctionName=name)
    with pytest.raises(LocalServiceError) as exc_info:
        local_lambda.set_faults("nobody-at-all", throttle_rate=0.5)
    assert "Function not found" in str(exc_info.value)


def test_faults_persist_across_a_restart_and_clear_removes_them(tmp_path, zip_code, capsys):
    from lambdakit.cli.main import main
    from lambdakit.local import LocalLambda

    with LocalLambda(state_dir=tmp_path / "state") as local:
        client = local.client()
        for name in ("kept-a", "kept-b"):
            client.create_function(
                FunctionName=name, Runtime="python3.11", Handler="app.handler",
                Role="arn:aws:iam::123456789012:role/x", Code={"ZipFile": zip_code(ECHO)},
            )  # fmt: skip
            client.get_waiter("function_active_v2").wait(FunctionName=name)
        local.set_faults("kept-a", error_rate=1.0, seed=3)
        local.set_faults("kept-b", throttle_rate=1.0)
        local.restart()
        client = local.client()
        assert local.faults("kept-a") == {
            "throttle_rate": 0.0, "error_rate": 1.0, "latency_ms": 0.0, "seed": 3,
            "throttle_reason": "ConcurrentInvocationLimitExceeded", "max_rps": None,
        }  # fmt: skip
        assert client.invoke(FunctionName="kept-a")["FunctionError"] == "Unhandled"
        with pytest.raises(client.exceptions.TooManyRequestsException):
            client.invoke(FunctionName="kept-b")
        where = ["--endpoint-url", local.endpoint_url]
        argv = ["local", "faults", "kept-b", "--throttle-rate", "1", "--throttle-reason",
                "CallerRateLimitExceeded", *where]  # fmt: skip
        assert main(argv) == 0
        assert json.loads(capsys.readouterr().out)["throttle_reason"] == "CallerRateLimitExceeded"
        with pytest.raises(ClientError) as exc_info:
            client.invoke(FunctionName="kept-b")
        assert exc_info.value.response["Reason"] == "CallerRateLimitExceeded"
        assert main(["local", "faults", "kept-b", "--throttle-reason", "Busy", *where]) == 1
        assert "throttle_reason must be one of" in capsys.readouterr().err
        assert main(["local", "faults", "--clear", "--endpoint-url", local.endpoint_url]) == 0
        assert "every function" in capsys.readouterr().out
        assert local.faults("kept-a") == {} and local.faults("kept-b") == {}
        local.restart()
        assert local.faults("kept-a") == {}
        assert "FunctionError" not in local.client().invoke(FunctionName="kept-a")


def test_unreadable_stored_faults_are_ignored(tmp_path):
    path = tmp_path / "faults.json"
    path.write_text(json.dumps({"ok": {"error_rate": 0.5}, "bad": {"latency_ms": "inf"}}))
    injector = FaultInjector(path=path)
    assert injector.all() == {"ok": FaultSettings(error_rate=0.5)}
    path.write_text("{not json")
    assert FaultInjector(path=path).all() == {}


def test_account_rate_rule_answers_with_the_reason_aws_uses(tmp_path, zip_code):
    from lambdakit.local import LocalLambda
    from lambdakit.local.server import ServerConfig

    with pytest.raises(ValueError, match="account_rps"):
        ServerConfig(account_rps=0)
    # 2 requests/s for the account: four calls in a row cannot all be within it.
    with LocalLambda(state_dir=tmp_path / "state", account_rps=2) as local:
        client = local.client()
        client.create_function(
            FunctionName="paced", Runtime="python3.11", Handler="app.handler",
            Role="arn:aws:iam::123456789012:role/x", Code={"ZipFile": zip_code(ECHO)},
        )  # fmt: skip
        client.get_waiter("function_active_v2").wait(FunctionName="paced")
        reasons = []
        for _ in range(4):
            try:
                client.invoke(FunctionName="paced", Payload=b"{}")
                reasons.append(None)
            except ClientError as exc:
                assert exc.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"]
                reasons.append(exc.response["Reason"])
        assert "FunctionInvocationRateLimitExceeded" in reasons
