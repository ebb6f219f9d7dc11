"""The contract every online feature store passes (SQLite, Redis, ...)."""

from __future__ import annotations

import math
import random
import threading
from typing import Any

import pytest

from wellml.errors import InvalidInput
from wellml.store.online import CAPABILITIES, OnlineStore

# One value of every supported type, including the awkward ones.
EVERY_TYPE: dict[str, Any] = {
    "int": 42,
    "big_int": 2**62 + 1,
    "neg_int": -7,
    "float": 0.1 + 0.2,  # not a "nice" decimal: must come back bit for bit
    "tiny": 5e-324,
    "neg_zero": -0.0,
    "whole_float": 3.0,  # must stay a float, not become 3
    "inf": math.inf,
    "ninf": -math.inf,
    "nan": math.nan,
    "str": 'héllo, wörld ✓ "quoted" \\ :[]',
    "empty_str": "",
    "digits_str": "123",  # must stay a string
    "true": True,
    "false": False,
    "none": None,
}


class OnlineStoreContract:
    """Subclass and provide a ``store`` fixture yielding an empty :class:`OnlineStore`."""

    @pytest.fixture
    def store(self) -> OnlineStore:
        raise NotImplementedError

    def test_capabilities_are_known_names(self, store: OnlineStore) -> None:
        assert isinstance(store.capabilities, frozenset)
        assert store.capabilities <= set(CAPABILITIES)
        assert {"event_time", "delete_view"} <= store.capabilities

    def test_every_value_type_round_trips_with_its_type(self, store: OnlineStore) -> None:
        assert store.write("v", (1,), EVERY_TYPE, 100.0) is True
        got = store.read("v", (1,))
        assert got is not None
        assert set(got) == set(EVERY_TYPE)
        for name, want in EVERY_TYPE.items():
            value = got[name]
            assert type(value) is type(want), name
            if isinstance(want, float) and math.isnan(want):
                assert math.isnan(value)
            elif isinstance(want, float):
                assert math.copysign(1.0, value) == math.copysign(1.0, want), name
                assert value == want, name
            else:
                assert value == want, name

    def test_numpy_scalars_are_stored_as_python_scalars(self, store: OnlineStore) -> None:
        np = pytest.importorskip("numpy")
        store.write("v", (1,), {"f": np.float32(0.5), "i": np.int64(3), "b": np.bool_(True)}, 1)
        got = store.read("v", (1,))
        assert got == {"f": 0.5, "i": 3, "b": True}
        assert [type(got[k]) for k in ("f", "i", "b")] == [float, int, bool]

    def test_unknown_keys_and_features_read_as_none(self, store: OnlineStore) -> None:
        assert store.read("v", ("nobody",)) is None
        assert store.read("nothing-written", (1,)) is None
        store.write("v", (1,), {"a": 1, "b": None}, 1.0)
        assert store.read("v", (1,), ["a", "missing"]) == {"a": 1, "missing": None}
        assert store.read("v", (2,), ["a"]) is None
        assert store.read("v", (1,), []) == {}
        # a stored None is a value, not an absent feature, but reads back the same way
        assert store.read("v", (1,)) == {"a": 1, "b": None}

    def test_row_with_no_features_exists(self, store: OnlineStore) -> None:
        store.write("v", (1,), {}, 1.0)
        assert store.read("v", (1,)) == {}
        assert store.read("v", (1,), ["a"]) == {"a": None}

    def test_read_batch_keeps_key_order_and_duplicates(self, store: OnlineStore) -> None:
        rows = [((i,), {"x": i * 10, "y": f"r{i}"}, 1.0) for i in range(20)]
        assert store.write_batch("v", rows) == 20
        keys = [(5,), (99,), (0,), (5,), (19,), (-1,)]
        got = store.read_batch("v", keys)
        assert got == [
            {"x": 50, "y": "r5"},
            None,
            {"x": 0, "y": "r0"},
            {"x": 50, "y": "r5"},
            {"x": 190, "y": "r19"},
            None,
        ]
        assert got[0] is not got[3]  # duplicates are separate dicts: mutating one is safe
        assert store.read_batch("v", keys, ["y"])[:3] == [{"y": "r5"}, None, {"y": "r0"}]
        assert store.read_batch("v", []) == []

    def test_older_event_time_is_ignored(self, store: OnlineStore) -> None:
        assert store.write("v", (1,), {"a": "new"}, 200.0) is True
        assert store.write("v", (1,), {"a": "old", "b": 1}, 100.0) is False
        assert store.read("v", (1,)) == {"a": "new"}
        # within one batch too, whatever the order
        applied = store.write_batch(
            "v",
            [((2,), {"a": "t3"}, 3.0), ((2,), {"a": "t1"}, 1.0), ((2,), {"a": "t2"}, 2.0)],
        )
        assert applied == 1
        assert store.read("v", (2,)) == {"a": "t3"}

    def test_newer_event_time_wins_and_replaces_the_row(self, store: OnlineStore) -> None:
        store.write("v", (1,), {"a": 1, "b": 2}, 100.0)
        assert store.write("v", (1,), {"a": 10}, 100.5) is True
        assert store.read("v", (1,)) == {"a": 10}  # a write replaces the whole feature row
        assert store.write_batch("v", [((1,), {"a": 11}, 101), ((1,), {"a": 12}, 102)]) == 2
        assert store.read("v", (1,)) == {"a": 12}

    def test_equal_event_time_overwrites(self, store: OnlineStore) -> None:
        store.write("v", (1,), {"a": 1}, 5.0)
        assert store.write("v", (1,), {"a": 2}, 5.0) is True
        assert store.read("v", (1,)) == {"a": 2}

    def test_event_times_compare_exactly(self, store: OnlineStore) -> None:
        t = 1_700_000_000.123456
        store.write("v", (1,), {"a": "first"}, t)
        assert store.write("v", (1,), {"a": "older"}, math.nextafter(t, 0)) is False
        assert store.write("v", (1,), {"a": "newer"}, math.nextafter(t, math.inf)) is True
        assert store.read("v", (1,)) == {"a": "newer"}

    def test_composite_and_typed_keys_are_distinct(self, store: OnlineStore) -> None:
        keys: list[tuple[Any, ...]] = [
            ("user", 1),
            ("user", "1"),
            ("user", 1.5),
            (1, "user"),
            ("user",),
            ("user", 1, "eu"),
            ("a:b", "c"),
            ("a", "b:c"),
            ("ünï", "✓"),
        ]
        store.write_batch("v", [(k, {"i": i}, 1.0) for i, k in enumerate(keys)])
        assert store.read_batch("v", keys) == [{"i": i} for i in range(len(keys))]
        list_key: Any = ["user", 1]
        assert store.read("v", list_key) == {"i": 0}  # a list key is the same tuple

    def test_views_are_isolated(self, store: OnlineStore) -> None:
        store.write("a", (1,), {"x": "a"}, 1.0)
        store.write("b", (1,), {"x": "b"}, 1.0)
        store.write("a.b", (1,), {"x": "a.b"}, 1.0)
        assert store.read("a", (1,)) == {"x": "a"}
        assert store.read("b", (1,)) == {"x": "b"}
        assert store.read("a.b", (1,)) == {"x": "a.b"}
        store.write("a", (1,), {"x": "a2"}, 0.5)  # older in a, though newer than nothing
        store.write("c", (1,), {"x": "c"}, 0.5)
        assert store.read("a", (1,)) == {"x": "a"}
        assert store.read("c", (1,)) == {"x": "c"}

    def test_delete_view_drops_only_that_view(self, store: OnlineStore) -> None:
        store.write_batch("a", [((i,), {"x": i}, 10.0) for i in range(1200)])
        store.write("ab", (1,), {"x": "kept"}, 1.0)
        store.write("b", (1,), {"x": "kept"}, 1.0)
        store.delete_view("a")
        store.delete_view("never-written")
        assert store.read_batch("a", [(0,), (1199,)]) == [None, None]
        assert store.read("ab", (1,)) == {"x": "kept"}
        assert store.read("b", (1,)) == {"x": "kept"}
        # after a delete, any event time is accepted again
        assert store.write("a", (0,), {"x": "back"}, 1.0) is True
        assert store.read("a", (0,)) == {"x": "back"}

    def test_large_batch(self, store: OnlineStore) -> None:
        n = 10_000
        rows = [((i, "k"), {"f": i * 0.5, "i": i, "s": str(i)}, float(i)) for i in range(n)]
        assert store.write_batch("big", rows) == n
        keys = [(i, "k") for i in range(n - 1, -1, -1)]
        got = store.read_batch("big", keys, ["f", "s"])
        assert got == [{"f": i * 0.5, "s": str(i)} for i in range(n - 1, -1, -1)]
        # rewriting with older times changes nothing; half of them newer applies half
        older = [(k, {"f": -1.0}, ts - 1) for k, _, ts in rows]
        assert store.write_batch("big", older) == 0
        mixed = [(k, {"f": -2.0}, ts + (1 if i % 2 else -1)) for i, (k, _, ts) in enumerate(rows)]
        assert store.write_batch("big", mixed) == n // 2
        back = store.read_batch("big", [(0, "k"), (1, "k")])
        assert back == [{"f": 0.0, "i": 0, "s": "0"}, {"f": -2.0}]

    def test_concurrent_writers_keep_the_newest(self, store: OnlineStore) -> None:
        times = list(range(400))
        random.Random(0).shuffle(times)
        errors: list[BaseException] = []

        def writer(part: list[int]) -> None:
            try:
                for t in part:
                    store.write("v", ("hot",), {"t": t}, float(t))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(times[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert store.read("v", ("hot",)) == {"t": 399}

    def test_bad_input_is_rejected_before_anything_is_written(self, store: OnlineStore) -> None:
        bad_rows: list[Any] = [
            [((1,), {"a": [1, 2]}, 1.0)],  # not a scalar
            [((1,), {"a": {"b": 1}}, 1.0)],
            [((1,), {"__ts": 1}, 1.0)],  # reserved name
            [((1,), {"": 1}, 1.0)],
            [((1,), {1: 1}, 1.0)],
            [((1,), {"a": 1}, math.nan)],  # event time must be finite
            [((1,), {"a": 1}, "yesterday")],
            [((), {"a": 1}, 1.0)],  # empty key
            [(1, {"a": 1}, 1.0)],  # key not a tuple
            [((1,), {"a": 1})],  # not a triple
        ]
        for rows in bad_rows:
            with pytest.raises(InvalidInput):
                store.write_batch("v", [((0,), {"a": "ok"}, 1.0), *rows])
        assert store.read("v", (0,)) is None  # the good first row was not written either
        with pytest.raises(InvalidInput):
            store.write("bad view", (1,), {"a": 1}, 1.0)
        with pytest.raises(InvalidInput):
            store.read("v:x", (1,))
        with pytest.raises(InvalidInput):
            store.read("v", (1,), "a")  # a string is not a list of names
        with pytest.raises(InvalidInput):
            store.delete_view("*")
        assert store.write_batch("v", []) == 0

    # -- bulk writes from Arrow tables -------------------------------------------------------

    @staticmethod
    def _table_rows() -> tuple[Any, list[tuple[tuple[Any, ...], dict[str, Any], float]]]:
        pa = pytest.importorskip("pyarrow")
        floats = [0.1 + 0.2, 3.0, math.nan, math.inf, -math.inf, -0.0, None, 5e-324, 1e20, 1e-7]
        n = len(floats)
        table = pa.table(
            {
                "region": pa.array(["eu", "us"] * (n // 2)).dictionary_encode(),
                "id": pa.array(list(range(n // 2)) * 2, pa.int32()),
                "ts": pa.array(
                    [1_700_000_000_000_000 + i * 1_000_000 for i in range(n)],
                    pa.timestamp("us", tz="Europe/Paris"),
                ),
                "f": pa.array(floats, pa.float64()),
                "i": pa.array([i - 3 if i % 4 else None for i in range(n)], pa.int64()),
                "s": pa.array(
                    ['q"uote', "back\\slash", "tab\there", "ü✓", "", None, "x", "1", "y", "z"]
                ),
                "b": pa.array([True, False, None, True, False, True, None, False, True, True]),
            }
        )
        rows = [
            (
                (r["region"], r["id"]),
                {k: r[k] for k in ("f", "i", "s", "b")},
                r["ts"].timestamp(),
            )
            for r in table.to_pylist()
        ]
        return table, rows

    def test_write_table_stores_what_write_batch_stores(self, store: OnlineStore) -> None:
        table, rows = self._table_rows()
        args: dict[str, Any] = {
            "key_columns": ["region", "id"],
            "timestamp_column": "ts",
            "feature_columns": ["f", "i", "s", "b"],
        }
        assert store.write_table("bulk", table, **args) == table.num_rows
        store.write_batch("rows", rows)
        keys = [key for key, _, _ in rows]
        bulk, single = store.read_batch("bulk", keys), store.read_batch("rows", keys)
        for got, want in zip(bulk, single, strict=True):
            assert got is not None and want is not None
            assert set(got) == set(want)
            for name in want:
                a, b = got[name], want[name]
                assert type(a) is type(b), (name, a, b)
                if isinstance(b, float) and math.isnan(b):
                    assert math.isnan(a)
                elif isinstance(b, float):
                    assert math.copysign(1.0, a) == math.copysign(1.0, b) and a == b, name
                else:
                    assert a == b, name

    def test_write_table_keeps_the_newest_and_the_last_of_equal_times(
        self, store: OnlineStore
    ) -> None:
        pa = pytest.importorskip("pyarrow")
        table = pa.table(
            {
                "k": pa.array(["a", "a", "a", "b"]),
                "ts": pa.array([20, 10, 20, 5], pa.timestamp("s")),
                "v": pa.array([1, 2, 3, 4]),
            }
        )
        args: dict[str, Any] = {
            "key_columns": ["k"],
            "timestamp_column": "ts",
            "feature_columns": ["v"],
        }
        store.write_table("v", table, **args)
        assert store.read("v", ("a",)) == {"v": 3}
        older = pa.table({"k": ["b"], "ts": pa.array([1], pa.timestamp("s")), "v": [9]})
        assert store.write_table("v", older, **args) == 0
        assert store.read("v", ("b",)) == {"v": 4}

    def test_write_table_rejects_bad_tables_before_writing(self, store: OnlineStore) -> None:
        pa = pytest.importorskip("pyarrow")
        good = {"k": pa.array([1, 2]), "ts": pa.array([1, 2], pa.timestamp("s"))}
        args: dict[str, Any] = {
            "key_columns": ["k"],
            "timestamp_column": "ts",
            "feature_columns": ["v"],
        }
        bad = [
            pa.table({**good, "v": pa.array([[1], [2]])}),  # lists are not scalars
            pa.table({**good, "w": pa.array([1, 2])}),  # missing feature column
            pa.table({"k": [1, None], "ts": good["ts"], "v": [1, 2]}),  # NULL key
            pa.table({"k": [1, 2], "ts": pa.array([1, None], pa.timestamp("s")), "v": [1, 2]}),
            pa.table({"k": [1, 2], "ts": [1, 2], "v": [1, 2]}),  # not a timestamp
        ]
        for table in bad:
            with pytest.raises(InvalidInput):
                store.write_table("v", table, **args)
        assert store.read_batch("v", [(1,), (2,)]) == [None, None]
        with pytest.raises(InvalidInput):
            store.write_table("bad view", pa.table({**good, "v": [1, 2]}), **args)

    def test_read_with_times_returns_the_stored_event_time(self, store: OnlineStore) -> None:
        store.write_batch(
            "v", [((1,), {"a": 1, "b": "x"}, 1_700_000_000.25), ((2,), {"a": 2}, 5.0)]
        )
        store.write("v", (2,), {"a": 3}, 4.0)  # older: ignored, the time stays 5.0
        got = store.read_batch_with_times("v", [(2,), (9,), (1,)], ["a"])
        assert got == [({"a": 2}, 5.0), None, ({"a": 1}, 1_700_000_000.25)]
        everything = store.read_batch_with_times("v", [(1,)])
        assert everything == [({"a": 1, "b": "x"}, 1_700_000_000.25)]
