"""The contract every online feature store passes (SQLite, Redis, ...)."""

from __future__ import annotations

import datetime as dt
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
    def _as_rows(
        table: Any, keys: list[str], ts: str, features: list[str]
    ) -> list[tuple[tuple[Any, ...], dict[str, Any], float]]:
        """The rows of a table as :meth:`OnlineStore.write_batch` takes them."""
        rows = []
        for r in table.to_pylist():
            when = r[ts]
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            rows.append((tuple(r[k] for k in keys), {f: r[f] for f in features}, when.timestamp()))
        return rows

    @staticmethod
    def _assert_same(got: dict[str, Any] | None, want: dict[str, Any] | None) -> None:
        """Equal rows, with equal value types, NaN equal to NaN and -0.0 apart from 0.0."""
        if want is None:
            assert got is None
            return
        assert got is not None
        assert set(got) == set(want)
        for name, b in want.items():
            a = got[name]
            assert type(a) is type(b), (name, a, b)
            if isinstance(b, float) and math.isnan(b):
                assert math.isnan(a), name
            elif isinstance(b, float):
                assert math.copysign(1.0, a) == math.copysign(1.0, b) and a == b, (name, a, b)
            else:
                assert a == b, (name, a, b)

    def test_write_table_stores_what_write_batch_stores(self, store: OnlineStore) -> None:
        pa = pytest.importorskip("pyarrow")
        floats = [0.1 + 0.2, 3.0, math.nan, math.inf, -math.inf, -0.0, None, 5e-324, 1e20, 1e-7]
        n = len(floats)
        table = pa.table(
            {
                "region": pa.array(["eu", "us"] * (n // 2)).dictionary_encode(),
                "id": pa.array(list(range(n // 2)) * 2, pa.int32()),
                "ts": pa.array(
                    [1_700_000_000_000_000 + i * 1_000_001 for i in range(n)],
                    pa.timestamp("us", tz="Europe/Paris"),
                ),
                "f": pa.array(floats, pa.float64()),
                "f32": pa.array([0.1] * n, pa.float32()),
                "i": pa.array([i - 3 if i % 4 else None for i in range(n)], pa.int64()),
                "u": pa.array([2**64 - 1 - i for i in range(n)], pa.uint64()),
                "s": pa.array(
                    ['q"uote', "back\\slash", "tab\there", "ü✓", "", None, "x", "1", "\x00", "z"]
                ),
                "b": pa.array([True, False, None, True, False, True, None, False, True, True]),
                "nothing": pa.nulls(n),
            }
        )
        features = ["f", "f32", "i", "u", "s", "b", "nothing"]
        rows = self._as_rows(table, ["region", "id"], "ts", features)
        args: dict[str, Any] = {
            "key_columns": ["region", "id"],
            "timestamp_column": "ts",
            "feature_columns": features,
        }
        assert store.write_table("bulk", table, **args) == n
        assert store.write_batch("rows", rows) == n
        keys = [key for key, _, _ in rows]
        bulk = store.read_batch_with_times("bulk", keys)
        single = store.read_batch_with_times("rows", keys)
        for got, want in zip(bulk, single, strict=True):
            assert got is not None and want is not None
            self._assert_same(got[0], want[0])
            assert got[1] == want[1]  # the same event time, to the last bit

    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_write_table_applies_rows_as_write_batch_would(
        self, store: OnlineStore, seed: int
    ) -> None:
        # Many rows per key with few distinct times (ties), applied over rows already stored
        # for some keys, in several chunks: the stored rows and the applied count must both
        # match a row-by-row write_batch of the same rows.
        pa = pytest.importorskip("pyarrow")
        rng = random.Random(seed)
        n = 300
        keys = [(rng.choice(["a", "b", 'q"']), rng.randrange(12)) for _ in range(n)]
        millis = [1_700_000_000_000 + 250 * rng.randrange(6) for _ in range(n)]
        table = pa.table(
            {
                "name": [k[0] for k in keys],
                "num": pa.array([k[1] for k in keys], pa.int16()),
                "ts": pa.array(millis, pa.timestamp("ms", tz="Asia/Kolkata")),
                "x": [rng.choice([None, math.nan, rng.random(), float(i)]) for i in range(n)],
                "y": [rng.choice([None, "", f"r{i}"]) for i in range(n)],
                "z": pa.array([i if i % 5 else None for i in range(n)], pa.int64()),
            }
        )
        features = ["x", "y", "z"]
        before = [
            ((name, num), {"old": True}, 1_700_000_000.0 + 0.25 * rng.randrange(6))
            for name in ("a", "b")
            for num in range(0, 12, 2)
        ]
        for view in ("rows", "bulk"):
            store.write_batch(view, before)
        expected = store.write_batch("rows", self._as_rows(table, ["name", "num"], "ts", features))
        applied = store.write_table(
            "bulk",
            table,
            key_columns=["name", "num"],
            timestamp_column="ts",
            feature_columns=features,
            chunk_rows=7,
        )
        assert applied == expected
        every = sorted(set(keys) | {key for key, _, _ in before})
        for got, want in zip(
            store.read_batch_with_times("bulk", every),
            store.read_batch_with_times("rows", every),
            strict=True,
        ):
            assert got is not None and want is not None
            self._assert_same(got[0], want[0])
            assert got[1] == want[1]

    def test_write_table_keeps_the_newest_and_the_last_of_equal_times(
        self, store: OnlineStore
    ) -> None:
        pa = pytest.importorskip("pyarrow")
        table = pa.table(
            {
                "k": pa.array(["a", "a", "a", "b", "a"]),
                "ts": pa.array([20, 10, 20, 5, 19], pa.timestamp("s")),
                "v": pa.array([1, 2, 3, 4, 5]),
            }
        )
        args: dict[str, Any] = {
            "key_columns": ["k"],
            "timestamp_column": "ts",
            "feature_columns": ["v"],
        }
        assert store.write_table("v", table, **args) == 3  # a@20, a@20 again, b@5
        assert store.read_batch("v", [("a",), ("b",)]) == [{"v": 3}, {"v": 4}]
        older = pa.table({"k": ["b"], "ts": pa.array([1], pa.timestamp("s")), "v": [9]})
        assert store.write_table("v", older, **args) == 0
        assert store.read("v", ("b",)) == {"v": 4}
        same = pa.table({"k": ["a"], "ts": pa.array([20], pa.timestamp("s")), "v": [7]})
        assert store.write_table("v", same, **args) == 1  # an equal time overwrites
        assert store.read("v", ("a",)) == {"v": 7}

    def test_write_table_keys_are_the_keys_write_batch_writes(self, store: OnlineStore) -> None:
        pa = pytest.importorskip("pyarrow")
        keys: list[tuple[Any, ...]] = [
            (1.5, True, 'q"\\\n✓', -(2**63)),
            (1.0, False, "", 0),
            (1e-7, True, "1", 2**63 - 1),
            (math.inf, False, "a:b", 7),
        ]
        table = pa.table(
            {
                "f": [k[0] for k in keys],
                "b": [k[1] for k in keys],
                "s": [k[2] for k in keys],
                "i": pa.array([k[3] for k in keys], pa.int64()),
                "ts": pa.array([1] * len(keys), pa.timestamp("s", tz="UTC")),
                "v": list(range(len(keys))),
            }
        )
        store.write_table(
            "v",
            table,
            key_columns=["f", "b", "s", "i"],
            timestamp_column="ts",
            feature_columns=["v"],
        )
        assert store.read_batch("v", keys) == [{"v": i} for i in range(len(keys))]
        assert store.read("v", (1, False, "", 0)) is None  # an int key part is not a float's

    @pytest.mark.parametrize(
        ("unit", "ticks", "zone"),
        [
            ("s", 1_700_000_000, None),
            ("ms", 1_700_000_000_123, "UTC"),
            ("us", 1_700_000_000_123_456, "America/New_York"),
            ("ns", 1_700_000_000_123_456_000, "+05:30"),
        ],
    )
    def test_write_table_takes_any_timestamp_unit_and_zone(
        self, store: OnlineStore, unit: str, ticks: int, zone: str | None
    ) -> None:
        pa = pytest.importorskip("pyarrow")
        per_second = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit]
        step = max(1, per_second // 10**6)
        table = pa.table(
            {
                "k": [1, 1],
                # the second row is older by a microsecond, or a second for whole seconds
                "ts": pa.array([ticks, ticks - step], pa.timestamp(unit, tz=zone)),
                "v": [1, 2],
            }
        )
        args: dict[str, Any] = {"key_columns": ["k"], "timestamp_column": "ts"}
        assert store.write_table("v", table, feature_columns=["v"], **args) == 1
        assert store.read_batch_with_times("v", [(1,)]) == [({"v": 1}, ticks / per_second)]
        # the stored time is the one write_batch compares against
        assert store.write("v", (1,), {"v": 3}, math.nextafter(ticks / per_second, 0)) is False

    def test_wide_rows_round_trip(self, store: OnlineStore) -> None:
        pa = pytest.importorskip("pyarrow")
        names = [f"feature_{i}" for i in range(450)]
        store.write("rows", (1,), {name: i for i, name in enumerate(names)}, 1.0)
        table = pa.table(
            {
                "k": [1],
                "ts": pa.array([1], pa.timestamp("s")),
                **{n: [float(i)] for i, n in enumerate(names)},
            }
        )
        store.write_table(
            "bulk", table, key_columns=["k"], timestamp_column="ts", feature_columns=names
        )
        assert store.read("rows", (1,)) == {name: i for i, name in enumerate(names)}
        asked = names[::-1][:420]
        assert store.read("bulk", (1,), asked) == {n: float(names.index(n)) for n in asked}
        smaller = pa.table({"k": [1], "ts": pa.array([2], pa.timestamp("s")), "feature_3": [0.5]})
        store.write_table(
            "bulk", smaller, key_columns=["k"], timestamp_column="ts", feature_columns=["feature_3"]
        )
        assert store.read("bulk", (1,)) == {"feature_3": 0.5}  # the whole row was replaced

    def test_write_table_of_no_rows_writes_nothing(self, store: OnlineStore) -> None:
        pa = pytest.importorskip("pyarrow")
        table = pa.table(
            {
                "k": pa.array([], pa.int64()),
                "ts": pa.array([], pa.timestamp("s")),
                "v": pa.array([], pa.float64()),
            }
        )
        args: dict[str, Any] = {
            "key_columns": ["k"],
            "timestamp_column": "ts",
            "feature_columns": ["v"],
        }
        assert store.write_table("v", table, **args) == 0

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
            pa.table({**good, "v": pa.array([{"a": 1}, {"a": 2}])}),  # nor are structs
            pa.table({**good, "v": pa.array([dt.date(2024, 1, 1)] * 2)}),  # dates are not JSON
            pa.table({**good, "w": pa.array([1, 2])}),  # missing feature column
            pa.table({"k": [1, None], "ts": good["ts"], "v": [1, 2]}),  # NULL key
            pa.table({"k": pa.array([[1], [2]]), "ts": good["ts"], "v": [1, 2]}),  # list key
            pa.table({"k": [1, 2], "ts": pa.array([1, None], pa.timestamp("s")), "v": [1, 2]}),
            pa.table({"k": [1, 2], "ts": [1, 2], "v": [1, 2]}),  # not a timestamp
        ]
        for table in bad:
            with pytest.raises(InvalidInput):
                store.write_table("v", table, **args)
        table = pa.table({**good, "v": [1, 2], "__ts": [1, 2]})
        other_args: list[dict[str, Any]] = [
            {**args, "feature_columns": ["v", "v"]},  # a repeated feature
            {**args, "feature_columns": ["__ts"]},  # a reserved name
            {**args, "feature_columns": "v"},  # one string is not a list of names
            {**args, "key_columns": []},
            {**args, "timestamp_column": ["ts"]},
        ]
        for bad_args in other_args:
            with pytest.raises(InvalidInput):
                store.write_table("v", table, **bad_args)
        with pytest.raises(InvalidInput):
            store.write_table("v", table.to_pandas(), **args)  # an Arrow table, nothing else
        with pytest.raises(InvalidInput):
            store.write_table("bad view", table, **args)
        assert store.read_batch("v", [(1,), (2,)]) == [None, None]

    def test_read_with_times_returns_the_stored_event_time(self, store: OnlineStore) -> None:
        store.write_batch(
            "v", [((1,), {"a": 1, "b": "x"}, 1_700_000_000.25), ((2,), {"a": 2}, 5.0)]
        )
        store.write("v", (2,), {"a": 3}, 4.0)  # older: ignored, the time stays 5.0
        got = store.read_batch_with_times("v", [(2,), (9,), (1,)], ["a"])
        assert got == [({"a": 2}, 5.0), None, ({"a": 1}, 1_700_000_000.25)]
        everything = store.read_batch_with_times("v", [(1,)])
        assert everything == [({"a": 1, "b": "x"}, 1_700_000_000.25)]
