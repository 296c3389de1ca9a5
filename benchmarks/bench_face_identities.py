"""Benchmark the audit by face: wall time per 1,000 face crops (dlib's ResNet embedding + clustering).

Prepares FF++'s mini set from the shared real-media folder (``--realdata``, default ``$CROSSFAKE_REALDATA``
or ``../shared/realdata`` beside the repository; YuNet weights from its ``weights/``) with ``--frames``
crops per video, or reads an already prepared manifest (``--prepared DIR``). Its real face crops are
repeated under new names until there are ``--crops`` of them (each copy a video of its own, so nothing is
shared and every crop is embedded), then :func:`audit_faces` runs on them with every crop embedded
(``crops=0``) and no cache, after a first untimed call that loads the models.

Prints the crops, the wall and CPU seconds of the audit, both per 1,000 crops, the people found, and
the load average (the machine is shared: wall time grows with it, CPU time much less).

Run:  python benchmarks/bench_face_identities.py [--crops 200] [--frames 8] [--prepared DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from crossfake.cli.main import main as cli_main
from crossfake.data.face_identity import FaceEmbedder, FaceSettings, audit_faces
from crossfake.data.manifest import read_manifest


def realdata_default() -> Path:
    value = os.environ.get("CROSSFAKE_REALDATA")
    return Path(value) if value else Path(__file__).resolve().parents[2] / "shared" / "realdata"


def repeated(df: pd.DataFrame, n: int) -> pd.DataFrame:
    """``n`` rows cycling through ``df``'s crops, every copy a video (and identity) of its own."""
    copies = []
    for k in range(-(-n // len(df))):
        c = df.copy()
        name = c["video_id"].str.replace("/", "_") + f"_copy{k}"
        c["video_id"] = "bench/real/" + name
        c["sample_id"] = c["video_id"] + "/" + c["frame_idx"].map("{:06d}".format)
        c["identity_group"] = "bench:person:" + name
        copies.append(c)
    out = pd.concat(copies, ignore_index=True).head(n)
    out.attrs["root"] = df.attrs["root"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--realdata", type=Path, default=realdata_default())
    parser.add_argument("--prepared", type=Path, help="a prepared manifest folder to take the crops from")
    parser.add_argument("--crops", type=int, default=200, help="crops to embed (default 200)")
    parser.add_argument("--frames", type=int, default=8, help="frames per video when preparing the mini set")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        prepared = args.prepared
        if prepared is None:
            prepared = Path(tmp) / "mini"
            weights = args.realdata / "weights" / "face_detection_yunet_2023mar.onnx"
            flags = ["--frames", str(args.frames), "--workers", "0", "--face-detector-weights", str(weights)]
            assert (
                cli_main(["prepare", str(args.realdata / "ffpp" / "mini"), "--out", str(prepared), *flags])
                == 0
            )
        base = read_manifest(prepared)
        base = base[base["manipulation"] == "real"]
        df = repeated(base, args.crops)
        settings = FaceSettings(crops=0, progress=False)
        embedder = FaceEmbedder(settings)
        audit_faces(repeated(base, 2), settings, cache=None, embedder=embedder)  # models loaded, warmed

        load = os.getloadavg()[0]
        wall, cpu = time.perf_counter(), time.process_time()
        audit = audit_faces(df, settings, cache=None, embedder=embedder)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu

    n = len(df)
    print(
        f"crops embedded            {n} ({len(base)} real FF++ crops of {base['video_id'].nunique()} videos, "
        f"repeated; {audit.units['faces'].sum()} with a face found)"
    )
    print(f"audit wall time           {wall:.1f} s   ({1000 * wall / n:.0f} s per 1,000 crops)")
    print(f"audit CPU time (process)  {cpu:.1f} s   ({1000 * cpu / n:.0f} s per 1,000 crops)")
    print(
        f"people found              {audit.units['cluster'].nunique()} (the {base['video_id'].nunique()} "
        "originals' people: copies of one video are one person)"
    )
    print(f"load average at start     {load:.1f} (this machine: {os.cpu_count()} cores, shared)")


if __name__ == "__main__":
    main()
