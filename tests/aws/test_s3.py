"""S3 datasets against moto's S3 server: keys, prefixes, globs, streaming, and every bad input."""

import gzip
import io
import json
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lambdakit.aws.connection import make_s3_client
from lambdakit.aws.s3 import (
    S3Store,
    download_folder,
    open_dataset,
    parse_s3_url,
    upload_folder,
)
from lambdakit.errors import InvalidInput, SourceError, StorageError
from lambdakit.records.batching import iter_batches
from lambdakit.records.datasets import Provenance, locate


def _jsonl(start, stop):
    return "".join(json.dumps({"i": i}) + "\n" for i in range(start, stop)).encode()


def _parquet(start, stop, row_group_size=1000):
    buffer = io.BytesIO()
    table = pa.table({"i": list(range(start, stop)), "pad": ["x" * 20] * (stop - start)})
    pq.write_table(table, buffer, row_group_size=row_group_size)
    return buffer.getvalue()


@pytest.fixture
def opened(s3_server):
    def call(url, **kwargs):
        return open_dataset(url, endpoint_url=s3_server, **kwargs)

    return call


def test_a_key_a_prefix_and_a_glob(s3_client, s3_bucket, opened):
    put = s3_client.put_object
    put(Bucket=s3_bucket, Key="d/2026/01/part-0.jsonl.gz", Body=gzip.compress(_jsonl(0, 3)))
    put(Bucket=s3_bucket, Key="d/2026/01/part-1.jsonl", Body=_jsonl(3, 5))
    put(Bucket=s3_bucket, Key="d/2026/02/part-0.jsonl", Body=_jsonl(5, 6))
    put(Bucket=s3_bucket, Key="d/_SUCCESS", Body=b"")
    put(Bucket=s3_bucket, Key="d/2026/", Body=b"")  # a console "folder"
    prefix = opened(f"s3://{s3_bucket}/d/")
    assert [r["i"] for r in prefix.records()] == list(range(6))  # key order
    assert prefix.skipped == ("d/_SUCCESS",)
    assert [r["i"] for r in opened(f"s3://{s3_bucket}/d")] == list(range(6))  # no slash
    one = opened(f"s3://{s3_bucket}/d/2026/01/part-0.jsonl.gz")
    assert [r["i"] for r in one] == [0, 1, 2] and len(one.objects) == 1
    glob = opened(f"s3://{s3_bucket}/d/2026/*/part-0.*")
    assert [o.name.rsplit("/", 3)[-3:] for o in glob.objects] == [
        ["2026", "01", "part-0.jsonl.gz"],
        ["2026", "02", "part-0.jsonl"],
    ]
    assert len(opened(f"s3://{s3_bucket}/**/*.jsonl").objects) == 2
    assert opened(f"s3://{s3_bucket}/d/").describe()["objects"] == 3


def test_the_standard_endpoint_variable_points_s3_at_a_local_server(
    s3_server, s3_client, s3_bucket, monkeypatch
):
    s3_client.put_object(Bucket=s3_bucket, Key="a.jsonl", Body=_jsonl(0, 2))
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    assert list(open_dataset(f"s3://{s3_bucket}/a.jsonl")) == [{"i": 0}, {"i": 1}]


def test_parquet_is_read_by_ranged_gets_of_its_row_groups_and_columns(s3_client, s3_bucket, opened):
    s3_client.put_object(Bucket=s3_bucket, Key="p/a.parquet", Body=_parquet(0, 5000, 700))
    dataset = opened(f"s3://{s3_bucket}/p/", columns=["i"])
    assert dataset.length() == 5000  # from the footer alone
    assert [r["i"] for r in dataset.records()] == list(range(5000))
    assert next(iter(dataset)) == {"i": 0}  # only the column asked for
    with pytest.raises(InvalidInput, match=r"a\.parquet has no column 'nope'"):
        list(opened(f"s3://{s3_bucket}/p/", columns=["nope"]))


def test_a_missing_bucket_an_empty_prefix_and_unknown_extensions_are_named(
    s3_client, s3_bucket, opened
):
    with pytest.raises(StorageError, match=r"s3://lk-no-such-bucket-x/d/: the bucket does not"):
        opened("s3://lk-no-such-bucket-x/d/")
    with pytest.raises(InvalidInput, match=r"no objects under this prefix"):
        opened(f"s3://{s3_bucket}/empty/")
    with pytest.raises(InvalidInput, match=r"no object with this key, and no objects under it"):
        opened(f"s3://{s3_bucket}/missing.jsonl")
    with pytest.raises(InvalidInput, match=r"matches no objects"):
        opened(f"s3://{s3_bucket}/*.parquet")
    s3_client.put_object(Bucket=s3_bucket, Key="x/report.xlsx", Body=b"PK")
    with pytest.raises(InvalidInput, match=r"x/report\.xlsx' has an unsupported suffix"):
        opened(f"s3://{s3_bucket}/x/")
    with pytest.raises(InvalidInput, match=r"names no bucket"):
        parse_s3_url("s3:///key")
    with pytest.raises(InvalidInput, match=r"is not a bucket name"):
        parse_s3_url("s3://No_Such/key")


def test_mixed_formats_under_a_prefix_are_refused_but_a_glob_may_choose_them(
    s3_client, s3_bucket, opened
):
    s3_client.put_object(Bucket=s3_bucket, Key="m/a.jsonl", Body=_jsonl(0, 2))
    s3_client.put_object(Bucket=s3_bucket, Key="m/b.parquet", Body=_parquet(2, 4))
    with pytest.raises(InvalidInput, match=r"mixes formats: jsonl \(s3://.*/m/a\.jsonl\), parquet"):
        opened(f"s3://{s3_bucket}/m/")
    assert [r["i"] for r in opened(f"s3://{s3_bucket}/m/*")] == [0, 1, 2, 3]


def test_access_denied_by_a_bucket_policy_names_the_object(s3_client, s3_bucket, opened):
    s3_client.put_object(Bucket=s3_bucket, Key="secret.jsonl", Body=_jsonl(0, 2))
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{s3_bucket}/*",
            }
        ],
    }
    s3_client.put_bucket_policy(Bucket=s3_bucket, Policy=json.dumps(policy))
    dataset = opened(f"s3://{s3_bucket}/secret.jsonl")  # listing is still allowed
    with pytest.raises(SourceError, match=r"secret\.jsonl: access denied") as caught:
        list(iter_batches(dataset, batch_size=10))
    assert caught.value.records_read == 0
    assert isinstance(caught.value.__cause__, StorageError)
    assert caught.value.__cause__.code == "AccessDenied"


def test_a_corrupt_gzip_member_or_parquet_file_names_the_object(s3_client, s3_bucket, opened):
    whole = gzip.compress(_jsonl(0, 5000))
    broken = whole[: len(whole) // 2]  # a member cut short, as by an interrupted upload
    s3_client.put_object(Bucket=s3_bucket, Key="g/a.jsonl.gz", Body=gzip.compress(_jsonl(0, 3)))
    s3_client.put_object(Bucket=s3_bucket, Key="g/b.jsonl.gz", Body=broken)
    stream = iter_batches(opened(f"s3://{s3_bucket}/g/"), batch_size=100_000)
    sent = []
    with pytest.raises(SourceError, match=r"s3://.*/g/b\.jsonl\.gz is not a readable gzip") as e:
        sent.extend(stream)
    assert e.value.records_read == sum(len(b) for b in sent) >= 3  # nothing read was dropped
    s3_client.put_object(Bucket=s3_bucket, Key="q/a.parquet", Body=b"PAR1 not really")
    with pytest.raises(InvalidInput, match=r"s3://.*/q/a\.parquet is not a readable Parquet"):
        opened(f"s3://{s3_bucket}/q/").length()


def test_an_object_rewritten_during_a_read_is_an_error_not_a_mix(s3_client, s3_bucket, opened):
    s3_client.put_object(Bucket=s3_bucket, Key="r/a.jsonl", Body=_jsonl(0, 3))
    dataset = opened(f"s3://{s3_bucket}/r/")
    s3_client.put_object(Bucket=s3_bucket, Key="r/a.jsonl", Body=_jsonl(10, 13))
    with pytest.raises(StorageError, match=r"changed since it was listed"):
        list(dataset.records())


def test_provenance_of_s3_records(s3_client, s3_bucket, opened):
    s3_client.put_object(Bucket=s3_bucket, Key="v/a.jsonl.gz", Body=gzip.compress(_jsonl(0, 2)))
    s3_client.put_object(Bucket=s3_bucket, Key="v/b.jsonl", Body=b'{"i": 2}\n\nnope\n')
    provenance = Provenance()
    records = list(opened(f"s3://{s3_bucket}/v/").records(provenance))
    where = locate(provenance.table(len(records)), range(len(records)))
    b = f"s3://{s3_bucket}/v/b.jsonl"
    assert where[2:] == [(b, 1, 1), (b, 3, 2)]
    assert "line 3 of s3://" in records[3].reason


def test_folders_go_to_s3_and_come_back(s3_server, s3_bucket, tmp_path):
    source = tmp_path / "out"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_text("a")
    (source / "sub" / "b.bin").write_bytes(b"\x00\x01")
    url = upload_folder(source, f"s3://{s3_bucket}/runs/1", endpoint_url=s3_server)
    assert url == f"s3://{s3_bucket}/runs/1/"
    back = download_folder(url, tmp_path / "back", endpoint_url=s3_server)
    assert (back / "a.txt").read_text() == "a" and (back / "sub" / "b.bin").read_bytes() == b"\0\1"
    with pytest.raises(InvalidInput, match="no objects under"):
        download_folder(f"s3://{s3_bucket}/nothing/", tmp_path / "x", endpoint_url=s3_server)


def test_a_large_file_goes_up_in_parts(s3_client, s3_bucket, tmp_path):
    path = tmp_path / "outputs.jsonl"
    data = bytes(range(256)) * (11 * 4096)  # 11 MiB: parts of 5, 5 and 1 MiB
    path.write_bytes(data)
    store = S3Store(s3_client, part_bytes=5 << 20)
    store.put_file(path, parse_s3_url(f"s3://{s3_bucket}/big/outputs.jsonl"))
    head = s3_client.head_object(Bucket=s3_bucket, Key="big/outputs.jsonl")
    assert head["ETag"].strip('"').endswith("-3")  # S3's mark of a 3-part upload
    body = s3_client.get_object(Bucket=s3_bucket, Key="big/outputs.jsonl")["Body"].read()
    assert body == data
    # Below the part size it is one PutObject.
    small = tmp_path / "small.json"
    small.write_bytes(b"{}")
    store.put_file(small, parse_s3_url(f"s3://{s3_bucket}/big/small.json"))
    assert "-" not in s3_client.head_object(Bucket=s3_bucket, Key="big/small.json")["ETag"]


def test_a_failed_multipart_upload_is_aborted_and_named(s3_client, s3_bucket, tmp_path):
    path = tmp_path / "outputs.jsonl"
    path.write_bytes(b"x" * (3 << 20))
    store = S3Store(s3_client, part_bytes=5 << 20)
    store.part_bytes = 1 << 20  # parts S3 refuses (under 5 MiB) when the upload completes
    with pytest.raises(StorageError) as caught:
        store.put_file(path, parse_s3_url(f"s3://{s3_bucket}/small-parts/outputs.jsonl"))
    assert "small-parts/outputs.jsonl" in str(caught.value), caught.value
    assert (caught.value.operation, caught.value.code) == (
        "CompleteMultipartUpload", "EntityTooSmall",
    )  # fmt: skip
    uploads = s3_client.list_multipart_uploads(Bucket=s3_bucket, Prefix="small-parts/")
    assert uploads.get("Uploads", []) == []  # aborted: no parts left behind to be billed
    with pytest.raises(InvalidInput, match="part_bytes must be at least"):
        S3Store(s3_client, part_bytes=1 << 20)


def test_the_s3_client_shares_the_profile_and_refuses_a_bad_endpoint(monkeypatch):
    with pytest.raises(InvalidInput, match="endpoint_url must be an http"):
        make_s3_client(endpoint_url="localhost:9000")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1")
    client = make_s3_client(region="eu-west-1")
    assert client.meta.endpoint_url == "http://127.0.0.1:1"
    assert client.meta.region_name == "eu-west-1"


def test_the_s3_client_takes_the_runs_session_and_its_credentials(s3_server, s3_client, s3_bucket):
    import boto3

    from lambdakit.engine.runner import open_records

    session = boto3.Session(
        aws_access_key_id="from-the-profile", aws_secret_access_key="s", region_name="eu-west-1"
    )
    client = make_s3_client(session=session, endpoint_url=s3_server)
    assert client.meta.region_name == "eu-west-1"
    assert client._request_signer._credentials.access_key == "from-the-profile"
    s3_client.put_object(Bucket=s3_bucket, Key="a.jsonl", Body=_jsonl(0, 1))
    dataset = open_records(f"s3://{s3_bucket}/a.jsonl", s3_endpoint_url=s3_server, session=session)
    assert list(dataset) == [{"i": 0}]


def test_csv_objects_keep_their_cells_and_take_csv_types(s3_client, s3_bucket, opened):
    body = b"id,zip,amount\n1,007,19.90\n2,02134,0.1\n"
    s3_client.put_object(Bucket=s3_bucket, Key="c/part-0.csv.gz", Body=gzip.compress(body))
    url = f"s3://{s3_bucket}/c/"
    assert list(opened(url)) == [
        {"id": 1, "zip": "007", "amount": Decimal("19.90")},
        {"id": 2, "zip": "02134", "amount": 0.1},
    ]
    assert [r["id"] for r in opened(url, csv_types="text")] == ["1", "2"]
    assert [r["zip"] for r in opened(url, csv_types="pandas")] == [7, 2134]
    with pytest.raises(InvalidInput, match=r"csv_types must be one of"):
        opened(url, csv_types="numbers")
