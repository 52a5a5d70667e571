#!/usr/bin/env python3
"""Fails when a dependency declares a `rust-version` newer than the workspace's.

Only one toolchain can be installed here, so the declared MSRV cannot be proven by building
with it; this check makes the declaration at least consistent with every dependency's own
declaration (read from `cargo metadata`, which resolves exactly the locked graph).
Usage: scripts/check-rust-version.py   (from anywhere in the workspace)
"""
import json
import subprocess
import sys


def parse(version):
    parts = [int(p) for p in version.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def main():
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    members = set(meta["workspace_members"])
    ours = {p["rust_version"] for p in meta["packages"] if p["id"] in members and p["rust_version"]}
    if len(ours) != 1:
        print(f"workspace members declare different rust-versions: {sorted(ours)}")
        return 1
    declared = ours.pop()
    used = {node["id"] for node in meta["resolve"]["nodes"]}
    too_new = sorted(
        (p["name"], p["version"], p["rust_version"])
        for p in meta["packages"]
        if p["id"] in used
        and p["id"] not in members
        and p["rust_version"]
        and parse(p["rust_version"]) > parse(declared)
    )
    for name, version, needs in too_new:
        print(f"{name} {version} needs Rust {needs}, above the declared rust-version {declared}")
    if too_new:
        return 1
    print(f"rust-version {declared} is at least every dependency's declared rust-version")
    return 0


if __name__ == "__main__":
    sys.exit(main())
