"""The S3 stand-in of the tests (moto's standalone server, tests/support/s3.py) behaves as an object store
does for s3fs: objects written are read back, listed, ranged, and each test's bucket starts empty."""

from __future__ import annotations

import fsspec


def test_objects_round_trip_through_s3fs(s3):
    url = s3.put("dir/a.txt", b"one\ntwo\n")
    s3.put("dir/b.txt", b"three\n")
    fs, path = fsspec.core.url_to_fs(url, **s3.storage_options)
    assert fs.cat_file(path) == b"one\ntwo\n"
    assert fs.cat_file(path, start=4, end=7) == b"two"
    assert sorted(fs.glob(s3.url("dir/*.txt"))) == [f"{s3.name}/dir/a.txt", f"{s3.name}/dir/b.txt"]


def test_each_test_gets_an_empty_bucket_of_its_own(s3, s3_server):
    assert s3.server.filesystem().ls(s3.name) == []
    other = s3_server.new_bucket()
    assert other != s3.name
