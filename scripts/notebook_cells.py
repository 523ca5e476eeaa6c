"""Cells shared by every notebook: title with Colab badge, overview, setup."""

from __future__ import annotations

GITHUB_REPOSITORY = "cloud-provider-analytics/cloud-provider-analytics"

SETUP_CODE = '''#@title Setup: works in Colab and locally, unchanged
import os, subprocess, sys
from pathlib import Path

REPO_URL = os.environ.get("REPO_URL", "https://github.com/{repo}.git")
if "google.colab" in sys.modules:
    from google.colab import drive
    drive.mount("/content/drive")
    PROJECT = Path("/content/cloud-provider-analytics")
    if not PROJECT.exists():
        subprocess.run(["git", "clone", "--depth", "1", REPO_URL, str(PROJECT)], check=True)
    if subprocess.run(["bash", "-c", "java -version 2>&1 | grep -q 'version \\"17'"]).returncode != 0:
        subprocess.run(["apt-get", "install", "-y", "-qq", "openjdk-17-jdk-headless"], check=True)
        os.environ["JAVA_HOME"] = "/usr/lib/jvm/java-17-openjdk-amd64"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", str(PROJECT / "requirements-colab.txt")], check=True)
else:
    PROJECT = Path.cwd().resolve().parent if Path.cwd().name == "notebooks" else Path.cwd().resolve()
sys.path.insert(0, str(PROJECT))

from lakehouse_utils.notebook import bootstrap
ctx = bootstrap("{name}")
ctx.describe()'''


def header_cells(name: str, title: str, overview: str) -> list[tuple[str, str]]:
    badge = (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
             f"(https://colab.research.google.com/github/{GITHUB_REPOSITORY}/blob/main/notebooks/{name}.ipynb)")
    return [
        ("markdown", f"# {title}\n\n{badge}"),
        ("markdown", f"## Overview\n\n{overview}"),
        ("markdown", "## Setup\n\nThe next cell installs what Colab lacks (Java 17, the pinned packages, this "
                     "repository), mounts Google Drive for the lake, and builds the Spark session. Locally it only "
                     "puts the project on the path. Configuration comes from the environment, `.env` or Colab "
                     "secrets (see `.env.example`); secrets are never printed."),
        ("code", SETUP_CODE.replace("{repo}", GITHUB_REPOSITORY).replace("{name}", name)),
    ]
