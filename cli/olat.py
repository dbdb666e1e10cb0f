"""``pnrelight olat``: a virtual light stage dataset (OLAT frames, G-buffer passes, environment relighting)."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "olat",
        help="render a light stage OLAT dataset of avatars, meshes or synthetic people",
        description="Render every subject under every light of a virtual light stage, one light at a time (OLAT), with "
        "G-buffer passes and environment-relit images composed from the OLAT frames; see docs/lightstage.md for the "
        "dataset format. Cameras: --views V on a horizontal arc in front of the subject (-arc/2 .. +arc/2, V = 1: "
        "straight in front), at 8x the subject's bounding radius; --yaw turns the subject (lights and cameras stay). "
        "Rerunning the same command continues an interrupted run (finished frames are skipped). --shard I/N renders "
        "only tasks i mod N = I (one machine each); then run the command once more without --shard to merge the "
        "manifests and write preview.png.",
    )
    p.add_argument("sources", nargs="*", type=Path, metavar="SOURCE", help="avatar folders (from `pnrelight avatar`), .glb or .obj meshes with textures")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="DATASET", help="dataset folder (created, or continued)")
    p.add_argument("--subjects", type=int, default=0, metavar="N", help="add N synthetic people made from the default head (seeded)")
    p.add_argument("--lights", default="331", metavar="LAYOUT",
                   help="light layout: 114, 156, 331 (default), lightstage-x-331, ico:162, N (Fibonacci sphere), FILE.lp or FILE.json")
    p.add_argument("--light-type", choices=["sun", "point"], default="sun",
                   help="OLAT lights: suns of 1 W/m^2 (default) or point lights at the layout's distance giving 1 W/m^2 at the centre")
    p.add_argument("--views", type=int, default=1, metavar="V", help="cameras per subject on an arc in front of it (default 1)")
    p.add_argument("--arc", type=float, default=90.0, metavar="DEG", help="angle the --views cameras span (default 90: -45..+45 deg)")
    p.add_argument("--yaw", type=float, nargs="+", default=[0.0], metavar="DEG",
                   help="turn the subject by these angles about the vertical (each yaw gives its own cameras; default 0)")
    p.add_argument("--envs", type=int, default=8, metavar="K", help="environment-relit images under K shipped maps (0..8, default 8)")
    p.add_argument("--env", type=Path, action="append", default=[], metavar="FILE", help="also relight under this lat-long .exr/.hdr (repeatable)")
    p.add_argument("--env-rotations", type=int, default=1, metavar="R", help="random yaws of each environment per camera (seeded; default 1)")
    p.add_argument("--size", type=int, default=512, metavar="PX", help="image width and height in pixels (default 512)")
    p.add_argument("--texture-size", type=int, default=512, metavar="PX", help="texture size of synthetic subjects (default 512)")
    grp = p.add_mutually_exclusive_group()
    grp.add_argument("--workers", type=int, default=1, metavar="N", help="processes on this machine (default 1)")
    grp.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                     help="run the tasks on Ray: a local runtime, or the cluster at ADDRESS (needs pip install pnrelight[scale])")
    p.add_argument("--shard", metavar="I/N", help="render only tasks i with i mod N = I (writes manifest.shard-I-of-N.jsonl)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic subjects and environment yaws (default 0)")
    p.add_argument("--no-shadows", action="store_true", help="render without cast shadows")
    p.add_argument("--diffuse-only", action="store_true", help="render the diffuse reflection only (no specular)")
    p.add_argument("--renderer", default="pnrelight", metavar="NAME",
                   help="pnrelight (default: the core ray caster), blender (Cycles on the CPU, one fresh bpy process per task), "
                        "or MODULE:CLASS of a plug-in renderer")
    p.add_argument("--no-preview", action="store_true", help="do not write preview.png")
    p.set_defaults(handler=cmd_olat)


def cmd_olat(args: argparse.Namespace) -> int:
    from pnrelight import progress
    from pnrelight.lightstage.olat import build_dataset

    s = build_dataset(args.output, args.sources, subjects=args.subjects, lights=args.lights, views=args.views, yaws=args.yaw,
                      arc_deg=args.arc, envs=args.envs, env_files=args.env, env_rotations=args.env_rotations, size=args.size,
                      seed=args.seed, shadows=not args.no_shadows, diffuse_only=args.diffuse_only, light_type=args.light_type,
                      renderer=args.renderer, texture_size=args.texture_size,
                      workers=args.workers if args.ray is None else None, ray=args.ray, shard=args.shard,
                      show_progress=progress._enabled, preview=not args.no_preview)
    where = f"shard {s['shard']} of" if s["shard"] else "dataset"
    print(f"olat: {where} {s['root']}: {s['tasks']} of {s['tasks_total']} tasks, {s['written']} frames written "
          f"({s['rendered']} OLAT renders), {s['skipped']} finished frames skipped, {s['seconds']:.1f} s"
          + (f"; preview {s['preview']}" if s["preview"] else "")
          + ("" if s["merged"] else "; run again without --shard when every shard is done, to merge the manifests"))
    return 0
