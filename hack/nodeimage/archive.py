"""A one-layer image archive (docker-archive format, what `ctr images import` reads) holding a
single static binary, without a registry or an image builder.

    python3 hack/nodeimage/archive.py BINARY IMAGE_REF OUT.tar --path /pause
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import tarfile
from pathlib import Path


def _tar_bytes(build) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        build(tar)
    return buf.getvalue()


def write_archive(binary: Path, ref: str, out: Path, path: str) -> None:
    data = binary.read_bytes()

    def layer_files(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(path.lstrip("/"))
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))

    # Fixed timestamps and ownership: the same binary always gives the same image ID.
    layer = _tar_bytes(layer_files)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": [path], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created_by": f"hack/nodeimage/archive.py {path}"}],
        },
        sort_keys=True,
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    layer_name = diff_id.split(":")[1] + "/layer.tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [ref], "Layers": [layer_name]}]).encode()

    def archive_files(tar: tarfile.TarFile) -> None:
        for name, body in ((layer_name, layer), (config_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(body), 0o644
            tar.addfile(info, io.BytesIO(body))

    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(_tar_bytes(archive_files))
    tmp.rename(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("binary", type=Path)
    parser.add_argument("ref")
    parser.add_argument("out", type=Path)
    parser.add_argument("--path", required=True, help="where the binary lives in the image (its entrypoint)")
    args = parser.parse_args()
    write_archive(args.binary, args.ref, args.out, args.path)


if __name__ == "__main__":
    main()
