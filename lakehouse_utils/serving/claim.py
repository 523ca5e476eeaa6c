"""Which lake a keyspace serves: one row in `serving_lake`, written when a lake claims the keyspace.

Each lake keeps its own record of what it loaded (the streaming checkpoints and key mirrors of
`serving.stage`); Cassandra keeps one copy of the rows. Two lakes loading one keyspace would
therefore overwrite each other's rows and delete the ones the other loaded, and neither
keyspace-to-Gold comparison would hold. So:

- A lake gets an id on its first serving or live run (`<lake>/_state/lake/lake.json`, a UUID).
- A table this lake has no checkpoint for (its first load, or the checkpoint was deleted) is
  emptied before it is loaded: rows loaded by anything else could never be deleted later,
  because this lake's key mirror does not know them. So is every table when the keyspace has
  no claim at all (dropped and re-created under this lake's checkpoints, which would load
  nothing more) or another lake's claim is taken over.
- The claim: a lake that loaded the keyspace before and finds another lake's claim is refused
  with the fix (own keyspace, or `--full-refresh` to take the keyspace over). `live` refuses
  any other lake's claim (it writes two tables and empties none, so it cannot take over).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from pyspark.sql import SparkSession

from lakehouse_utils import io
from lakehouse_utils.paths import LakePaths, join
from lakehouse_utils.serving.connection import CassandraError, CassandraTarget

LAKE_TABLE = "serving_lake"
CLAIM_KEY = "lake"


class KeyspaceClaimedError(CassandraError):
    """The keyspace serves another lake, and this lake loaded it before: two lakes would share it."""


@dataclass(frozen=True)
class Claim:
    lake_id: str
    lake_root: str
    run_id: str
    claimed_at: datetime | None


def lake_id_uri(paths: LakePaths) -> str:
    return join(paths.state("lake"), "lake.json")


def lake_id(spark: SparkSession, paths: LakePaths) -> str:
    """This lake's id, created on first use (`lake_id_uri`)."""
    uri = lake_id_uri(paths)
    payload = io.read_json(spark, uri)
    if payload is None:
        payload = {"lake_id": uuid.uuid4().hex, "created_at": datetime.now(timezone.utc).isoformat()}
        io.write_json(spark, uri, payload)
    return str(payload["lake_id"])


def read_claim(session) -> Claim | None:
    row = session.execute(f"SELECT lake_id, lake_root, run_id, claimed_at FROM {LAKE_TABLE} WHERE claim = %s",
                          (CLAIM_KEY,)).one()
    return None if row is None else Claim(row.lake_id, row.lake_root, row.run_id, row.claimed_at)


def write_claim(session, claim: Claim) -> None:
    session.execute(f"INSERT INTO {LAKE_TABLE} (claim, lake_id, lake_root, run_id, claimed_at) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    (CLAIM_KEY, claim.lake_id, claim.lake_root, claim.run_id, claim.claimed_at))


def check_claim(session, target: CassandraTarget, mine: Claim, refused_because: str | None) -> str:
    """Claim the keyspace for this lake, or refuse another lake's claim when `refused_because` says why
    this lake may not take it over; returns what happened: kept, claimed or taken over."""
    current = read_claim(session)
    if current is not None and current.lake_id == mine.lake_id:
        return "kept"
    if current is not None and refused_because:
        since = f", claimed {current.claimed_at:%Y-%m-%d %H:%M} UTC" if current.claimed_at else ""
        raise KeyspaceClaimedError(
            f"keyspace {target.keyspace} on {target.endpoint} serves another lake ({current.lake_root}, lake id "
            f"{current.lake_id[:8]}{since}, run {current.run_id}), but {refused_because}: two lakes in one "
            "keyspace overwrite and delete each other's rows, and neither would equal its Gold. Give each lake "
            "its own keyspace (CASSANDRA_KEYSPACE=<name>), or move this keyspace to this lake with "
            "`python -m lakehouse_utils pipeline --stage serving --full-refresh` (it empties the tables and "
            "reloads them from this lake's Gold).")
    write_claim(session, mine)
    return "claimed" if current is None else "taken over"


def release_claim(session, lake_id: str) -> bool:
    """Remove the claim if it is `lake_id`'s (a throwaway lake about to be deleted); True when removed.

    The next lake to load the keyspace then finds no claim and reloads every table in full."""
    row = session.execute(f"DELETE FROM {LAKE_TABLE} WHERE claim = %s IF lake_id = %s", (CLAIM_KEY, lake_id)).one()
    return bool(row[0]) if row is not None else False
