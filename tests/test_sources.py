"""File sources: ``read_text`` / ``read_jsonl`` give the same elements on every executor, read lazily
outside Spark and with ``sc.textFile`` on Spark."""

from __future__ import annotations

import json
import operator
from collections import Counter
from collections.abc import Iterator

import pytest

from atoll import LocalExecutor, Pipeline, PipelineError, SerialExecutor, read_jsonl, read_text

add = operator.add


def words(line):
    return line.split()


def pair_one(w):
    return (w, 1)


WORD_COUNT = Pipeline().flatMap(words).map(pair_one).reduceByKey(add)


@pytest.fixture
def parts(tmp_path):
    """A directory of three pre-partitioned text files, plus files Hadoop would skip."""
    d = tmp_path / "parts"
    d.mkdir()
    for i in range(3):
        (d / f"part-{i:05d}").write_text("".join(f"w{i} w{j % 4} x\n" for j in range(50)))
    (d / "_SUCCESS").write_text("")
    (d / ".part-00000.crc").write_text("not data\n")
    return d


def test_text_lines_without_line_endings(tmp_path):
    f = tmp_path / "a.txt"
    f.write_bytes(b"one two\r\nthree\n\nlast-no-newline")
    assert list(read_text(f)) == ["one two", "three", "", "last-no-newline"]
    assert list(read_text(str(f))) == list(read_text(f"file://{f}"))


def test_directory_glob_and_list(parts):
    files = sorted(p for p in parts.iterdir() if p.name.startswith("part-"))
    every = [line for f in files for line in f.read_text().splitlines()]
    assert list(read_text(parts)) == every
    assert list(read_text(str(parts / "part-*"))) == every
    assert list(read_text([files[2], files[0]])) == (files[2].read_text().splitlines()
                                                     + files[0].read_text().splitlines())


def test_reads_lazily_and_can_be_read_again(parts):
    source = read_text(parts)
    it = iter(source)
    assert isinstance(it, Iterator)
    assert next(it) == "w0 w0 x"
    assert len(list(source)) == 150  # a fresh pass from the start


def test_missing_paths_are_pipeline_errors(tmp_path):
    with pytest.raises(PipelineError, match="does not exist"):
        list(read_text(tmp_path / "nope.txt"))
    with pytest.raises(PipelineError, match="no file matches"):
        list(read_text(str(tmp_path / "*.csv")))
    # any fsspec protocol is read on every executor; one fsspec does not know is named in the error
    with pytest.raises(PipelineError, match="cannot open nosuchfs://bucket/data.*nosuchfs"):
        list(read_text("nosuchfs://bucket/data"))


def test_jsonl(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text('{"k": "a", "n": 1}\n\n{"k": "b", "n": 2}\n  \n{"k": "a", "n": 5}\n')
    assert list(read_jsonl(f)) == [{"k": "a", "n": 1}, {"k": "b", "n": 2}, {"k": "a", "n": 5}]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"ok": 1}\n{not json}\n')
    with pytest.raises(PipelineError, match=r"bad.jsonl line 2 is not JSON"):
        list(read_jsonl(bad))


@pytest.mark.parametrize("executor", [SerialExecutor(), LocalExecutor(2, min_parallel_seconds=0,
                                                                        probe_seconds=0)],
                         ids=["serial", "local"])
def test_word_count_on_files_outside_spark(executor, parts):
    expected = Counter(w for f in parts.glob("part-*") for w in f.read_text().split())
    assert dict(WORD_COUNT.run(read_text(parts), executor=executor)) == expected


# -- on Spark ------------------------------------------------------------------------------------

@pytest.mark.spark
def test_spark_reads_a_directory_one_partition_per_file(spark_local_executor, parts):
    rdd = spark_local_executor.run_pass(read_text(parts), [], None)
    assert rdd.getNumPartitions() == 3
    assert sorted(rdd.collect()) == sorted(read_text(parts))
    result = WORD_COUNT.run(read_text(parts), executor=spark_local_executor)
    assert dict(result) == dict(WORD_COUNT.run(read_text(parts), executor=SerialExecutor()))


@pytest.mark.spark
def test_spark_jsonl_and_glob(spark_local_executor, tmp_path):
    for i in range(2):
        (tmp_path / f"events-{i}.jsonl").write_text(
            "".join(json.dumps({"user": f"u{j % 3}", "n": j}) + "\n" for j in range(20)) + "\n")
    source = read_jsonl(str(tmp_path / "events-*.jsonl"))
    p = Pipeline().map(lambda e: (e["user"], e["n"])).reduceByKey(add)
    assert dict(p.run(source, executor=spark_local_executor)) == dict(p.run(source))
    fork = Pipeline().fork(Pipeline().map(lambda e: e["n"]).reduce(max),
                           Pipeline().map(lambda e: 1).reduce(add))
    assert fork.run(source, executor=spark_local_executor) == fork.run(source) == (19, 40)


@pytest.mark.spark
def test_spark_bad_json_is_a_pipeline_error(spark_local_executor, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"ok": 1}\n{not json}\n')
    with pytest.raises(PipelineError, match="not JSON") as caught:
        Pipeline().map(len).run(read_jsonl(bad), executor=spark_local_executor)
    assert caught.value.item == "{not json}"
