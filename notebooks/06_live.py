# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Live: a landing file's usage in Cassandra within seconds
#
# [![Open In Colab][colab-badge]][open-in-colab]
#
# [colab-badge]: https://colab.research.google.com/assets/colab-badge.svg
# [open-in-colab]: https://colab.research.google.com/github/cloud-provider-analytics/cloud-provider-analytics/blob/main/notebooks/06_live.ipynb

# %% [markdown]
# ## Overview
#
# `python -m lakehouse_utils live` is the speed layer of the Lambda architecture
# ([ADR 120](../docs/decisions/120-live-speed-layer.md)). It runs the Bronze stream's own query
# (same file source, same checkpoint). Each micro-batch is first committed to Bronze, exactly as
# `02_bronze_stream` does it. Then, for every (org, day, service) that the batch's new events
# touch, the full daily figures are recomputed from all live events and upserted into Q1's table
# `daily_usage_by_org_month` (and Q5's `genai_usage_by_org_month`), in the rows the batch layer
# serves. It uses the batch layer's own rules and sums (rule catalogue, master joins, UTC dates,
# value casting, unit imputation), so the batch load that follows changes no measure.
#
# This notebook starts `live` in the background for about a minute, on a fresh demo lake whose
# landing starts with the masters and two event files. It then drops three more files (each
# written under a temporary name, then renamed) and shows Q1 before and after.
#
# Prerequisites: the landing data (`LANDING_DIR`) and a running Cassandra (`05_serving` starts the
# local node, or set `CASSANDRA_HOST`). The demo writes to its own lake (`build/live_demo`) and
# keyspace (`LIVE_KEYSPACE` below), so what `01`–`05` built is left untouched.
#
# **Source:** edit `notebooks/06_live.py` (jupytext), not this `.ipynb`, which is generated from it
# with its outputs; a change saved to the `.ipynb` (e.g. from Colab) must be synced back with
# `python -m scripts.sync_notebooks --from-ipynb 06_live`.

# %% [markdown]
# ## Setup
#
# The same Setup cell as every notebook (Colab: this repository, the pinned packages, Java 17 and,
# for the local Cassandra, Maven; locally it only puts the project on the path).

# %% cellView="form"
# @title Setup: works in Colab and locally, unchanged
import os
import subprocess
import sys
from pathlib import Path

REPO_URL = os.environ.get("REPO_URL", "https://github.com/cloud-provider-analytics/cloud-provider-analytics.git")
if "google.colab" in sys.modules:  # Drive is mounted by `bootstrap` when the lake or the landing is on it
    PROJECT = Path("/content/cloud-provider-analytics")
    if not PROJECT.exists():
        subprocess.run(["git", "clone", "--depth", "1", REPO_URL, str(PROJECT)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", str(PROJECT / "requirements-colab.txt")], check=True)
    sys.path.insert(0, str(PROJECT))
    from lakehouse_utils.notebook import prepare_colab

    prepare_colab(serving=True)  # apt: Java 17, and Maven when SERVING_TARGET=local
else:
    PROJECT = Path.cwd().resolve().parent if Path.cwd().name == "notebooks" else Path.cwd().resolve()
sys.path.insert(0, str(PROJECT))

from lakehouse_utils.notebook import bootstrap

ctx = bootstrap("06_live")
ctx.describe()

# %% [markdown]
# ## Parameters

# %% tags=["parameters"]
LIVE_SECONDS = 75  # how long the background `live` runs
FILES_TO_DROP = 3
LIVE_KEYSPACE = "cloud_analytics_live_demo"

# %% [markdown]
# ## Prepare a demo landing
#
# The course landing is never modified: the demo links its masters and copies two event files;
# the files to drop come from the same folder. The demo keyspace is dropped first, so Q1 shows
# only what this run adds.

# %%
import time

import pandas as pd

from lakehouse_utils.config import Settings
from lakehouse_utils.live import demo
from lakehouse_utils.notebook import display_path
from lakehouse_utils.serving import queries
from lakehouse_utils.serving.connection import open_session, target_from_settings

settings = Settings.load(cassandra_keyspace=LIVE_KEYSPACE)
source = Path(settings.landing_dir)
work = PROJECT / "build" / "live_demo"
landing, to_drop = demo.prepare_landing(source, work, initial_files=2)
target = target_from_settings(settings)
demo.reset_keyspace(target)  # `live` recreates it: Q1 below starts from this run's files only
print(f"source landing: {display_path(str(source), {'LANDING_DIR': str(source)})}")
print(f"demo landing:   {display_path(str(landing))}\nkeyspace:       {target.keyspace}")

# %% [markdown]
# ## Start `live` in the background
#
# The progress lines are the command's own: files and events per micro-batch, rows upserted, and
# lag (now − the newest file's modification time; the demo copies keep the current time).

# %%
log = work / "live.log"
process = demo.start_live(landing, work / "lake", LIVE_SECONDS, log, keyspace=LIVE_KEYSPACE)
deadline = time.time() + 600
while process.poll() is None and time.time() < deadline and not any(
        line.startswith("live batch") for line in demo.progress_lines(log)):
    time.sleep(1)
print("\n".join(demo.progress_lines(log)))

# %% [markdown]
# ## Q1 before the drops
#
# The demo org is the org with the most events in the files still to drop, and the window is the
# 7 days that end on their latest event date.

# %%
events = pd.concat(pd.read_json(path, lines=True) for path in to_drop[:FILES_TO_DROP])
org = events["org_id"].value_counts().idxmax()
date_to = pd.to_datetime(events["timestamp"], utc=True, format="ISO8601").max().date()
date_from = date_to - pd.Timedelta(days=6)
with open_session(target) as session:
    before = pd.DataFrame(queries.q1(session, org, date_from=date_from, date_to=date_to))
print(f"Q1 for {org}, {date_from} .. {date_to}")
before

# %% [markdown]
# ## Drop three files, one every two seconds, and wait for their batches

# %%
batches_before = sum(line.startswith("live batch") for line in demo.progress_lines(log))
for path in to_drop[:FILES_TO_DROP]:
    demo.drop_file(path, landing / "usage_events_stream")
    print(f"{time.strftime('%H:%M:%S')} dropped {path.name}")
    time.sleep(2)
while process.poll() is None and sum(
        int(line.split(": ", 1)[1].split(" file")[0]) for line in demo.progress_lines(log)
        if line.startswith("live batch")) < 2 + FILES_TO_DROP:
    time.sleep(1)
print("\n".join(demo.progress_lines(log)))

# %% [markdown]
# ## Q1 after: new (day, service) rows, and more events in existing ones
#
# `event_count` and `daily_cost_usd` of each (day, service) of the same query, before and after the three
# files (a row absent before shows NaN there): the live layer adds each new event to its day's row.

# %%
with open_session(target) as session:
    after = pd.DataFrame(queries.q1(session, org, date_from=date_from, date_to=date_to))
key, measures = ["usage_date", "service"], ["event_count", "daily_cost_usd"]
changed = before.set_index(key)[measures].join(after.set_index(key)[measures], how="outer",
                                               lsuffix="_before", rsuffix="_after")
changed["change_usd"] = changed["daily_cost_usd_after"].fillna(0) - changed["daily_cost_usd_before"].fillna(0)
is_new = changed["event_count_before"].isna()
grew = ~is_new & (changed["event_count_after"] > changed["event_count_before"])
print(f"Q1 rows: {len(before)} before, {len(after)} after; {int(is_new.sum())} new, {int(grew.sum())} with more "
      f"events, {int((~is_new & ~grew).sum())} unchanged")
changed.sort_values("change_usd", ascending=False).head(15)

# %% [markdown]
# ## Stop
#
# `live` stops by itself after `LIVE_SECONDS` (Ctrl-C stops it cleanly between two micro-batches
# when run in a terminal). Every later `pipeline --stage all` on the same lake finds no new
# Bronze batch, recomputes Silver and Gold, and serves the same measures plus the anomaly columns.

# %%
process.wait(timeout=600)
print("\n".join(demo.progress_lines(log)[-3:]))
