"""``read_text`` / ``read_jsonl`` over fsspec URLs, read in line-aligned byte ranges.

Partition boundaries are compared with reading the whole file; the same pipelines give the same results on
the serial executor, the local one (n_jobs=2, each worker reading its own ranges from the store) and Spark
(local mode and the standalone cluster), for local files and for ``s3://`` URLs on the S3 stand-in (moto's
standalone server, tests/support/s3.py, which stands in for a real object store).
"""

from __future__ import annotations

import gzip
import json
import operator
from collections import Counter

import pytest

import atoll.sources
from atoll import LocalExecutor, Pipeline, PipelineError, SerialExecutor, read_jsonl, read_text
from atoll.sources import ByteRange

SAMPLES = {
    "empty": b"",
    "one line, no newline": b"abc",
    "one newline": b"\n",
    "blank lines": b"\n\n\nx\n\n",
    "lines": b"ab\ncd\nef\n",
    "no trailing newline": b"ab\ncd\nef",
    "crlf": b"ab\r\ncd\r\n\r\nlast\r\n",
    "crlf, no trailing newline": b"ab\r\ncd",
    "multi-byte characters": "é€😀 x\nñ\n€€€€€€€€\n".encode(),
    "a line longer than a range": b"s\n" + b"L" * 40 + b"\nt\nu\n" + b"M" * 25,
}


def expected_lines(data: bytes) -> list[str]:
    """The lines of ``data`` as the whole file gives them: split at \\n, one \\r before it dropped."""
    text = data.decode()
    lines = text.split("\n")
    if text.endswith("\n") or not text:
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


@pytest.mark.parametrize("block", [3, 1 << 20], ids=["tiny-reads", "default-reads"])
@pytest.mark.parametrize("name", list(SAMPLES))
def test_ranges_of_every_size_give_the_whole_file(tmp_path, monkeypatch, name, block):
    monkeypatch.setattr(atoll.sources, "_BLOCK", block)  # block edges inside lines and line endings
    data = SAMPLES[name]
    path = tmp_path / "f.txt"
    path.write_bytes(data)
    whole = list(read_text(path))
    assert whole == expected_lines(data)
    for size in range(1, len(data) + 2):
        ranges = read_text(path, partition_bytes=size).partitions()
        assert [(r.start, r.end) for r in ranges] == [(a, min(a + size, len(data)))
                                                       for a in range(0, len(data), size)]
        assert [line for r in ranges for line in r] == whole, f"partition_bytes={size}"


def test_a_line_belongs_to_the_range_where_it_starts(tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes(b"aaa\nbbb\nccc\n")  # lines start at bytes 0, 4, 8
    assert list(ByteRange(str(path), 0, 4)) == ["aaa"]
    assert list(ByteRange(str(path), 1, 5)) == ["bbb"]   # starts mid-line: "aaa" is the range before's
    assert list(ByteRange(str(path), 4, 5)) == ["bbb"]   # runs past its end to finish its line
    assert list(ByteRange(str(path), 5, 8)) == []        # no line starts in bytes 5..7
    assert list(ByteRange(str(path), 5, 9)) == ["ccc"]


def test_gzip_is_one_range_read_whole(tmp_path):
    lines = [json.dumps({"n": i, "w": "x" * (i % 7)}) for i in range(500)]
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    source = read_jsonl(path, partition_bytes=100)
    assert [(r.start, r.end) for r in source.partitions()] == [(0, None)]
    assert list(source) == [json.loads(line) for line in lines]


def test_bad_partition_bytes_is_refused(tmp_path):
    with pytest.raises(PipelineError, match="partition_bytes must be a positive integer"):
        read_text(tmp_path / "x", partition_bytes=0)


def test_a_byte_range_pickles_as_a_reference(tmp_path):
    import pickle

    path = tmp_path / "big.txt"
    path.write_bytes(b"word " * 200_000 + b"\n")
    (part,) = read_text(path, storage_options={"auto_mkdir": False}).partitions()
    assert len(pickle.dumps(part)) < 300
    assert pickle.loads(pickle.dumps(part)).storage_options == {"auto_mkdir": False}


def test_bad_json_names_the_file_and_line_in_a_range(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": 2}\n{oops}\n')
    with pytest.raises(PipelineError, match=r"bad.jsonl line 3 is not JSON") as caught:
        list(read_jsonl(path))
    assert caught.value.item == "{oops}"
    with pytest.raises(PipelineError, match=r"the part from byte 9\) line 2 is not JSON"):
        list(ByteRange(str(path), 9, 30, "jsonl"))


# -- the same results on every executor, for local files and s3:// ----------------------------------

def words(line):
    return line.split()


def by_user(event):
    return (event["user"], event["n"])


WORD_COUNT = Pipeline().flatMap(words).map(lambda w: (w, 1)).reduceByKey(operator.add)
PER_USER = Pipeline().map(by_user).reduceByKey(operator.add)
LINES = Pipeline().map(len)


def make_files():
    """Two text files and two JSON-lines files (one gzip), with lines across many 1 KiB ranges."""
    text = ["".join(f"w{(i * 7 + j) % 13} " for j in range(i % 9)) + f"line{i}" for i in range(400)]
    events = [json.dumps({"user": f"u{i % 5}", "n": i}) for i in range(300)]
    return {
        "text/a.txt": ("\n".join(text[:250]) + "\n").encode(),
        "text/b.txt": ("\r\n".join(text[250:])).encode(),  # CRLF and no trailing newline
        "events/1.jsonl": ("\n".join(events[:200]) + "\n\n").encode(),
        "events/2.jsonl.gz": gzip.compress(("\n".join(events[200:]) + "\n").encode()),
    }


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    """The files of :func:`make_files` in a local folder or a bucket of the S3 stand-in: a function from
    a relative name to (URL, storage_options)."""
    files = make_files()
    if request.param == "local":
        for name, data in files.items():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_bytes(data)
        return lambda name: (str(tmp_path / name), {})
    s3 = request.getfixturevalue("s3")
    for name, data in files.items():
        s3.put(name, data)
    return lambda name: (s3.url(name), s3.storage_options)


def expected(pipeline, source):
    """The result of the pipeline over the whole files, serially, as a comparable value."""
    result = pipeline.run(list(source), executor=SerialExecutor())
    return Counter(dict(result)) if pipeline is not LINES else sorted(result)


def comparable(pipeline, result):
    return Counter(dict(result)) if pipeline is not LINES else sorted(result)


def sources(store):
    text_url, options = store("text/*.txt")
    events_url, _ = store("events/")
    return [(WORD_COUNT, read_text(text_url, storage_options=options, partition_bytes=1024)),
            (LINES, read_text(text_url, storage_options=options, partition_bytes=1024)),
            (PER_USER, read_jsonl(events_url, storage_options=options, partition_bytes=1024))]


def check_everywhere(store, executor):
    for pipeline, source in sources(store):
        whole = expected(pipeline, source)
        assert whole, "the files hold data"
        assert comparable(pipeline, pipeline.run(source, executor=executor)) == whole, repr(source)


def test_serial_streams_every_source(store):
    text_url, options = store("text/*.txt")
    source = read_text(text_url, storage_options=options)
    lines = list(source)
    assert len(lines) == 400 and lines[250].endswith(" line250") and lines[-1].endswith("line399")
    check_everywhere(store, SerialExecutor())


def test_local_workers_read_their_own_ranges(store, monkeypatch):
    executor = LocalExecutor(2)
    text_url, options = store("text/a.txt")
    source = read_text(text_url, storage_options=options, partition_bytes=1024)
    assert len(source.partitions()) > 2
    check_everywhere(store, executor)
    assert executor.last_plan.chunks == len(read_jsonl(store("events/")[0], storage_options=options,
                                                       partition_bytes=1024).partitions())

    counted = dict(WORD_COUNT.run(source, executor=SerialExecutor()))

    # this process cannot read a byte of the files any more: the workers still can, so it sent them
    # references, never data
    def refused(*args, **kwargs):
        raise AssertionError("the calling process read the data")

    monkeypatch.setattr(atoll.sources, "_lines_of", refused)
    with pytest.raises(AssertionError, match="calling process"):
        list(source)
    assert dict(WORD_COUNT.run(source, executor=executor)) == counted


def test_missing_remote_file_is_a_pipeline_error(store):
    url, options = store("text/nope-*.txt")
    with pytest.raises(PipelineError, match="no file matches"):
        LINES.run(read_text(url, storage_options=options), executor=LocalExecutor(2))


@pytest.mark.spark
def test_spark_local_mode_reads_ranges_in_its_executors(store, spark_local_executor):
    check_everywhere(store, spark_local_executor)
    text_url, options = store("text/*.txt")
    source = read_text(text_url, storage_options=options, partition_bytes=1024)
    rdd = spark_local_executor.run_pass(source, [], None)
    assert rdd.getNumPartitions() >= len(source.partitions())


@pytest.mark.spark
def test_spark_cluster_reads_ranges_in_its_executors(store, spark_cluster_executor):
    check_everywhere(store, spark_cluster_executor)


@pytest.mark.spark
def test_spark_bad_json_in_a_remote_range_is_a_pipeline_error(s3, spark_local_executor):
    url = s3.put("bad.jsonl", b'{"ok": 1}\n{not json}\n')
    with pytest.raises(PipelineError, match="not JSON") as caught:
        LINES.run(read_jsonl(url, storage_options=s3.storage_options), executor=spark_local_executor)
    assert caught.value.item == "{not json}"


def test_the_configuration_sets_the_default_range(tmp_path, monkeypatch):
    from tests.support import write_config

    path = tmp_path / "f.txt"
    path.write_bytes(b"x\n" * 5000)  # 10,000 bytes
    monkeypatch.setenv("ATOLL_CONF", str(write_config(tmp_path, dataset_partition_bytes=3000)))
    executor = LocalExecutor(2)
    assert LINES.run(read_text(path), executor=executor) == [1] * 5000
    assert executor.last_plan.chunks == 4
    assert LINES.run(read_text(path, partition_bytes=1000), executor=executor) == [1] * 5000
    assert executor.last_plan.chunks == 10


def test_an_empty_file_gives_what_an_empty_input_gives(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    total = Pipeline().map(len).reduce(operator.add)
    for executor in (SerialExecutor(), LocalExecutor(2)):
        assert LINES.run(read_text(path), executor=executor) == []
        assert WORD_COUNT.run(read_text(path), executor=executor) == []
        with pytest.raises(PipelineError, match="nothing to reduce"):
            total.run(read_text(path), executor=executor)
