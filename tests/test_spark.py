"""The Spark executor on a real Spark: local mode (``local[2]``) and a standalone cluster on loopback.

Tests on local mode come first and the cluster's last, so the process's one SparkContext switches
master as few times as possible. Configuration tests need pyspark but start no Spark.
"""

from __future__ import annotations

import logging
import operator
import os
import subprocess
import sys
import textwrap
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atoll import ConfigError, Pipeline, PipelineError, SerialExecutor, StageFailure, load_config
from tests.requirements import unavailable
from tests.spark_cluster import require_spark

pytestmark = pytest.mark.spark

add = operator.add


def inc(x):
    return x + 1


def words(line):
    return line.split()


def pair_one(w):
    return (w, 1)


def fails_on_first_attempt(x):
    """Raise on a task's first attempt, succeed when Spark retries it (and outside Spark)."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    if ctx is not None and ctx.attemptNumber() == 0:
        raise ConnectionError(f"transient failure in partition {ctx.partitionId()}")
    return x * 10


def serial(p, data, **kwargs):
    return p.run(data, executor=SerialExecutor(), **kwargs)


def as_map(pairs):
    pairs = list(pairs)
    assert len(pairs) == len(dict(pairs)), pairs
    return dict(pairs)


@pytest.fixture
def pyspark_installed():
    try:
        import pyspark  # noqa: F401
    except ImportError:
        unavailable("spark", "pyspark is not installed (pip install 'atoll[spark]')")


# -- configuration (no Spark started) --------------------------------------------------------------

@pytest.fixture
def config(monkeypatch, pyspark_installed):
    monkeypatch.delenv("ATOLL_CONF", raising=False)
    return load_config


def test_from_config_defaults(config):
    from atoll.executors.spark import SparkExecutor

    ex = SparkExecutor.from_config(config())
    assert ex.master == "local[*]"
    assert ex.conf == {}
    assert ex.log_level == "WARN"


def test_from_config_passes_conf_binary_and_log_level(config):
    from atoll.executors.spark import SparkExecutor

    ex = SparkExecutor.from_config(config(
        spark_master="spark://10.0.0.1:7077", spark_conf={"spark.executor.memory": "2g"},
        spark_binary="hdfs://dist/spark.tgz", spark_log_level="ERROR", zookeeper_host="zk:2181"))
    assert ex.master == "spark://10.0.0.1:7077"  # an explicit master wins over zookeeper_host
    assert ex.conf == {"spark.executor.memory": "2g", "spark.executor.uri": "hdfs://dist/spark.tgz"}
    assert ex.log_level == "ERROR"


def test_zookeeper_host_means_mesos_which_needs_pyspark_35(config):
    import pyspark

    from atoll.executors.spark import SparkExecutor, SparkUnavailableError

    if int(pyspark.__version__.split(".")[0]) < 4:
        assert SparkExecutor.from_config(config(zookeeper_host="zk1:2181")).master == \
            "mesos://zk://zk1:2181/mesos"
        return
    with pytest.raises(ConfigError) as caught:
        SparkExecutor.from_config(config(zookeeper_host="zk1:2181"))
    assert isinstance(caught.value, SparkUnavailableError)
    message = str(caught.value)
    assert "mesos://zk://zk1:2181/mesos" in message
    assert "pyspark 3.5" in message and "pip install 'pyspark>=3.5,<4'" in message


def _python(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, timeout=120, cwd=os.path.dirname(os.path.dirname(__file__)))


def test_missing_pyspark_says_what_to_install():
    # pyspark is installed here, so the child process hides it: an import of it fails as when absent
    result = _python("""
        import sys
        sys.modules["pyspark"] = None
        from atoll import Pipeline, ConfigError
        try:
            Pipeline().map(abs)([1], distributed=True)
        except ConfigError as exc:
            print("ERROR", exc)
    """)
    assert "ERROR the Spark executor needs pyspark" in result.stdout, result.stderr
    assert "pip install 'atoll[spark]'" in result.stdout


def test_missing_java_says_what_to_install(pyspark_installed):
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = os.path.dirname(sys.executable)  # the virtualenv's bin only: no java
    result = _python("""
        from atoll import Pipeline, ConfigError
        from atoll.executors.spark import SparkExecutor
        try:
            Pipeline().map(abs).run([1], executor=SparkExecutor(master="local[1]"))
        except ConfigError as exc:
            print("ERROR", exc)
    """, env)
    assert "ERROR the Spark executor needs Java" in result.stdout, result.stderr
    assert "Java 17" in result.stdout and "JAVA_HOME" in result.stdout


def test_the_context_is_stopped_at_exit():
    require_spark()
    result = _python("""
        import logging
        logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
        from atoll import Pipeline
        from atoll.executors.spark import SparkExecutor
        print(Pipeline().map(abs).run([-1, 2], executor=SparkExecutor(master="local[1]")))
    """)
    assert "[1, 2]" in result.stdout, result.stderr[-2000:]
    assert "atoll.executors.spark stopping the SparkContext on local[1]" in result.stderr
    assert result.returncode == 0


# -- local mode ---------------------------------------------------------------------------------

@pytest.fixture
def spark(spark_local_executor):
    return spark_local_executor


def test_word_count_matches_serial(spark):
    lines = [f"w{i % 7} w{i % 3} end" for i in range(500)]
    p = Pipeline().flatMap(words).map(pair_one).reduceByKey(add)
    assert as_map(p.run(lines, executor=spark)) == as_map(serial(p, lines))


def test_results_stay_rdds_until_the_end(spark):
    from pyspark import RDD

    narrow = spark.walk(Pipeline().map(inc).filter(bool), range(10), {})
    keyed = spark.walk(Pipeline().map(pair_one).reduceByKey(add), ["a", "b", "a"], {})
    assert isinstance(narrow, RDD) and isinstance(keyed, RDD)
    assert spark.collect(narrow) == list(range(1, 11))
    assert as_map(spark.collect(keyed)) == {"a": 2, "b": 1}


def test_rdd_input_is_used_as_it_is(spark):
    rdd = spark.context.parallelize(range(100), 4)
    assert Pipeline().map(inc).reduce(add).run(rdd, executor=spark) == sum(range(1, 101))


def test_generator_dict_and_tuple_inputs(spark):
    p = Pipeline().map(inc)
    assert p.run((x for x in range(5)), executor=spark) == [1, 2, 3, 4, 5]
    assert Pipeline().mapValues(inc).run({"a": 1}, executor=spark) == [("a", 2)]
    assert p.run((1, 2), executor=spark) == [2, 3]


def test_a_generator_is_sent_in_chunks_and_keeps_its_order(spark):
    from atoll.executors.spark import SparkExecutor

    small = SparkExecutor(master="local[2]", chunk_size=7)
    rdd = small.run_pass((x for x in range(30)), [], None)
    assert rdd.getNumPartitions() == 10  # chunks of 7, 7, 7, 7, 2, each cut in two
    p = Pipeline().map(str).reduce(add)  # not commutative: partials must merge in order
    assert p.run((x for x in range(30)), executor=small) == "".join(map(str, range(30)))
    assert Pipeline().map(inc).run(iter([]), executor=small) == []


def test_a_function_that_cannot_travel_names_its_stage(spark):
    lock = threading.Lock()
    with pytest.raises(PipelineError, match=r"stage 1 map\(.*cannot be sent to Spark") as caught:
        Pipeline().map(inc).map(lambda x: (lock, x)[1]).run([1], executor=spark)
    assert caught.value.stage.index == 1


def test_fork_reads_its_input_once(spark):
    calls = spark.context.accumulator(0)

    def counted(x):
        calls.add(1)
        return x

    data = list(range(200))
    p = Pipeline().map(counted).fork(Pipeline().map(inc), Pipeline().reduce(add))
    assert p.run(data, executor=spark) == serial(Pipeline().fork(Pipeline().map(inc),
                                                                 Pipeline().reduce(add)), data)
    assert calls.value == len(data)  # the forked RDD was cached: not recomputed per branch


def test_fork_caches_are_released_and_a_callers_cache_is_kept(spark):
    persistent = spark.context._jsc.getPersistentRDDs
    before = persistent().size()
    p = Pipeline().map(inc).fork(Pipeline().reduce(add), Pipeline().reduce(max))
    assert p.run(range(10), executor=spark) == (55, 10)
    assert persistent().size() == before
    mine = spark.context.parallelize(range(10)).cache()
    assert Pipeline().fork(Pipeline().reduce(add), None).run(mine, executor=spark) == \
        (45, list(range(10)))
    assert mine.is_cached
    mine.unpersist()


def test_settings_of_a_running_context_are_not_silently_dropped(spark, caplog):
    from atoll.executors.spark import SparkExecutor

    with caplog.at_level(logging.WARNING, logger="atoll.executors.spark"):
        other = SparkExecutor(master="local[2]", conf={"spark.sql.shuffle.partitions": "3"})
        assert other.context is spark.context
    assert "spark.sql.shuffle.partitions" in caplog.text and "already running" in caplog.text


def test_nested_pipelines_and_split(spark):
    inner = Pipeline().map(inc).reduce(add)
    p = Pipeline().map(inner).fork(Pipeline().reduce(max), None).split(None, Pipeline().map(inc))
    data = [[1, 2], [3], [4, 5, 6]]
    assert p.run(data, executor=spark) == serial(p, data)


def test_runtime_kwargs_reach_the_workers(spark):
    p = Pipeline().map(lambda x, scale: x * scale, kwargs=["scale"])
    assert p.run([1, 2], executor=spark, scale=3) == [3, 6]


def test_a_failure_raises_the_original_type_with_stage_item_and_worker_traceback(spark):
    from py4j.protocol import Py4JError

    def lookup(k):
        return {"a": 1}[k]

    with pytest.raises(KeyError) as caught:
        Pipeline().map(str.lower).map(lookup).run(["A", "a", "B"], executor=spark)
    err = caught.value
    assert isinstance(err, StageFailure) and not isinstance(err, Py4JError)
    assert err.stage.index == 1 and err.stage.function.endswith("lookup")
    assert err.item == "b"
    assert "in lookup" in err.remote_traceback and "KeyError" in err.remote_traceback


def test_the_worker_traceback_names_the_users_file_and_line(spark, cloudpickle_release):
    def parse_record(x):
        return int(x)

    with pytest.raises(ValueError) as caught:
        Pipeline().map(parse_record).run(["1", "x"], executor=spark)
    line = parse_record.__code__.co_firstlineno + 1
    assert f'File "{__file__}", line {line}, in parse_record\n    return int(x)' \
        in caught.value.remote_traceback


def test_a_huge_failing_element_comes_back_as_its_short_repr(spark):
    big = "x" * 1_000_000
    with pytest.raises(ValueError) as caught:
        Pipeline().map(lambda s: int(s[:3])).run(["123", big], executor=spark)
    item = caught.value.item
    assert isinstance(item, str) and len(item) <= 100 and item.startswith("'xxx") and "..." in item
    assert caught.value.stage.operator == "map"


def test_a_failure_while_merging_keys_across_partitions(spark):
    # one pair per partition: the function first runs in Spark's reduceByKey merge, not map-side
    data = spark.context.parallelize([("k", 1), ("k", 0)], 2)
    with pytest.raises(ZeroDivisionError) as caught:
        Pipeline().reduceByKey(operator.truediv).run(data, executor=spark)
    assert caught.value.stage.operator == "reduceByKey"
    assert "truediv" in str(caught.value)


def test_reduce_of_nothing_is_a_pipeline_error(spark):
    with pytest.raises(PipelineError, match="nothing to reduce"):
        Pipeline().filter(lambda x: x > 5).reduce(add).run([1, 2], executor=spark)


def test_local_mode_does_not_retry_a_failed_task(spark):
    with pytest.raises(ConnectionError, match="transient failure"):
        Pipeline().map(fails_on_first_attempt).run([1, 2, 3], executor=spark)


def test_spark_logging_is_quiet_by_default(spark):
    jvm = spark.context._jvm
    assert str(jvm.org.apache.logging.log4j.LogManager.getRootLogger().getLevel()) == "WARN"


def test_executors_on_one_master_share_one_context(spark):
    from atoll.executors.spark import SparkExecutor

    assert SparkExecutor(master="local[2]").context is spark.context


ELEMENTWISE = [("map", inc), ("map", lambda x: x * 3 % 11), ("filter", lambda x: x % 2 == 0),
               ("flatMap", lambda x: [x] * (x % 3))]
ENDINGS = ["none", "reduce", "reduceByKey"]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.lists(st.integers(-50, 50), max_size=40),
       chain=st.lists(st.integers(0, len(ELEMENTWISE) - 1), max_size=4),
       ending=st.sampled_from(ENDINGS))
def test_random_pipelines_equal_serial(spark, data, chain, ending):
    p = Pipeline()
    for i in chain:
        op, f = ELEMENTWISE[i]
        p = getattr(p, op)(f)
    if ending == "reduce":
        p = p.reduce(add)
    elif ending == "reduceByKey":
        p = p.map(lambda x: (x % 5, x)).reduceByKey(add)
    try:
        expected = serial(p, data)
    except PipelineError as exc:
        with pytest.raises(type(exc)):
            p.run(data, executor=spark)
        return
    got = p.run(data, executor=spark)
    if ending == "reduceByKey":
        assert as_map(got) == as_map(expected)
    else:
        assert got == expected


def test_another_master_replaces_the_context(spark, caplog):
    from atoll.executors.spark import SparkExecutor

    old = spark.context
    with caplog.at_level(logging.INFO, logger="atoll.executors.spark"):
        other = SparkExecutor(master="local[1]")
        assert Pipeline().map(inc).run([1], executor=other) == [2]
    assert other.context.master == "local[1]" and old._jsc is None
    assert "stopping the SparkContext on local[2]" in caplog.text
    assert Pipeline().map(inc).run([1], executor=spark) == [2]  # and back, on first use
    assert spark.context.master == "local[2]"


# -- the standalone cluster ------------------------------------------------------------------------

@pytest.fixture
def cluster(spark_cluster_executor):
    return spark_cluster_executor


def test_cluster_runs_on_its_executors_not_the_driver(cluster, spark_cluster):
    pids = set(Pipeline().map(lambda _: os.getpid()).run(range(20), executor=cluster))
    assert os.getpid() not in pids
    assert spark_cluster.status()["aliveworkers"] == 2


def test_cluster_lambdas_closures_and_test_module_functions(cluster):
    offset = 100

    def shifted(x):
        return x + offset

    lines = ["a b", "b c c"]
    assert Pipeline().map(lambda x: x * 2).map(shifted).map(inc).run([1, 2], executor=cluster) == \
        [103, 105]
    wc = Pipeline().flatMap(words).map(pair_one).reduceByKey(add)
    assert as_map(wc.run(lines * 50, executor=cluster)) == {"a": 50, "b": 100, "c": 100}
    assert Pipeline().map(Pipeline().map(shifted).reduce(add)).run([[1, 2]], executor=cluster) == [203]


def test_cluster_failure_has_the_original_type(cluster):
    with pytest.raises(ZeroDivisionError) as caught:
        Pipeline().map(lambda x: 1 // x).run([2, 1, 0, 3], executor=cluster)
    assert caught.value.item == 0 and caught.value.stage.operator == "map"
    assert "ZeroDivisionError" in caught.value.remote_traceback


def test_cluster_retries_a_transient_failure(cluster):
    # spark.task.maxFailures is 4 on a cluster: every partition fails once and succeeds on retry
    data = list(range(40))
    assert Pipeline().map(fails_on_first_attempt).run(data, executor=cluster) == [x * 10 for x in data]

