"""Run the example pipelines serially and on local processes, and print what they give."""

import operator
import time

from atoll import LocalExecutor, Pipeline, SerialExecutor

SENTENCES = [
    "The Coral Project is a collaboration between Mozilla",
    "The New York Times and the Washington Post, funded by the Knight Foundation",
]


def word_count(sentence: str) -> int:
    """Return the number of words in a sentence."""
    return len(sentence.split())


def main() -> None:
    counts = Pipeline(name="word_counts").map(word_count)
    print("word counts:", counts(SENTENCES))

    wc = Pipeline(name="wordcount").flatMap(str.split).map(lambda w: (w.lower(), 1)) \
        .reduceByKey(operator.add)
    lines = SENTENCES * 50_000
    for executor in (SerialExecutor(), LocalExecutor(n_jobs=2)):
        start = time.perf_counter()
        result = dict(wc.run(lines, executor=executor))
        print(f"{executor!r}: {len(result)} distinct words, 'the' x{result['the']}, "
              f"{time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
