"""The runner's schema-change report, from dlt's own load packages (real dlt, DuckDB)."""

from pathlib import Path

import dlt

from pipeline_runner.schema_changes import SchemaChange, data_tables, load_changes


def test_first_load_creates_later_loads_change(tmp_path: Path) -> None:
    pipeline = dlt.pipeline(
        "changes",
        destination=dlt.destinations.duckdb(str(tmp_path / "x.duckdb")),
        pipelines_dir=str(tmp_path),
        dataset_name="d",
    )
    assert data_tables(pipeline) == set()
    info = pipeline.run([{"id": 1, "n": 1}], table_name="t")
    assert load_changes(info, set()) == ([], ["t"])

    known = data_tables(pipeline)
    assert known == {"t"}
    info = pipeline.run([{"id": 2, "n": 2.5, "tags": ["a"], "note": "x"}], table_name="t")
    changes, created = load_changes(info, known)
    assert set(changes) == {
        SchemaChange("t", "n__v_double", "double"),
        SchemaChange("t", "note", "text"),
        SchemaChange("t__tags", None),
    }
    assert created == ["t__tags"]
    kinds = {c.describe(): c.kind for c in changes}
    assert kinds == {
        "t: variant column n__v_double (double)": "variant column",
        "t: new column note (text)": "new column",
        "t__tags: new table": "new table",
    }

    info = pipeline.run([{"id": 3, "n": 3}], table_name="t")
    assert load_changes(info, data_tables(pipeline)) == ([], [])
