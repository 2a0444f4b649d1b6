"""deploy(..., url=...) against lambdakit local: the URL and the permission it needs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import urllib3

import lambdakit
from lambdakit.aws.deploy import deploy
from lambdakit.errors import DeployError

BATCH_PROCESSOR = Path(__file__).resolve().parents[2] / "notebooks/functions/batch_processor"


@pytest.fixture
def deployed(lambda_client: Any) -> Any:
    names: list[str] = []

    def make(**kwargs: Any) -> dict[str, Any]:
        name = f"url-deploy-{len(names)}-{time.monotonic_ns() % 10**9}"
        names.append(name)
        return deploy(lambda_client, name, BATCH_PROCESSOR, **kwargs)

    yield make
    for name in names:
        lambda_client.delete_function(FunctionName=name)


def test_deploy_with_a_public_url(deployed: Any, lambda_client: Any, local_lambda: Any) -> None:
    result = deployed(url="NONE")
    name = result.function_name
    assert result.function_url == f"{local_lambda.endpoint_url}/lambda-url/{name}/"
    reply = urllib3.request("POST", result.function_url, body=b'{"Items": [{"id": 1, "value": 2}]}')
    assert reply.status == 200, reply.data
    assert json.loads(reply.data) == [{"id": 1, "value": 2, "score": 2.0, "tags": []}]
    policy = json.loads(lambda_client.get_policy(FunctionName=name)["Policy"])
    assert [s["Action"] for s in policy["Statement"]] == ["lambda:InvokeFunctionUrl"]
    # A redeploy keeps the URL and does not trip over the statement it added before.
    again = deploy(lambda_client, name, BATCH_PROCESSOR, url="NONE")
    assert again.function_url == result.function_url


def test_deploy_with_an_iam_url_on_an_alias(deployed: Any) -> None:
    result = deployed(alias="live", url="AWS_IAM")
    url = result.function_url
    assert url.endswith(f"/lambda-url/{result.function_name}:live/")
    assert urllib3.request("POST", url, body=b'{"Items": []}').status == 403
    run = lambdakit.run([{"id": i, "value": i} for i in range(5)], url=url, auth="aws_iam",
                        cache=False, progress=False)  # fmt: skip
    assert [o["score"] for o in run.outputs()] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert run.attempts["executed_version"].tolist() == ["1"]


def test_deploy_refuses_an_unknown_url_type(lambda_client: Any) -> None:
    with pytest.raises(DeployError, match="url must be"):
        deploy(lambda_client, "never-made", BATCH_PROCESSOR, url="PUBLIC")
