"""Regenerate the head-texture figures of docs/avatar.md: the astronaut on the ICT-FaceKit head.

Run: .venv/bin/python docs/make_head_figures.py [--texture-size 1024]
Writes docs/images/ict_albedo_astronaut.png (the atlas: albedo, photo weight, normals, specular)
and docs/images/ict_head_astronaut_views.png (turntable: unlit albedo, and relit by the shipped "studio" map
the way the pipeline's relit renders are: ``pnrelight.lightstage.render``, shadows on).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pnrelight.avatar import face_model, pipeline  # noqa: E402
from pnrelight.avatar.color import linear_to_srgb  # noqa: E402
from pnrelight.avatar.preview import contact_sheet  # noqa: E402
from pnrelight.avatar.render import framing  # noqa: E402
from pnrelight.imageio import write_image  # noqa: E402

OUT = REPO / "docs" / "images"
YAWS = (0, 45, 90, 180, 270)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texture-size", type=int, default=1024)
    args = ap.parse_args(argv)
    from skimage import data

    model = face_model.load_ict_face_model()
    face_model.load_default_face_model = lambda *a, **k: model  # the head, whatever the default model is
    t0 = time.perf_counter()
    stage = pipeline._Stages(False)
    rec = pipeline.reconstruct(data.astronaut(), texture_size=args.texture_size, stage=stage)
    print(f"reconstruct {time.perf_counter() - t0:.1f} s, uv textures {stage.timings['uv textures']:.2f} s")
    tex = rec.textures
    cov = tex["coverage"][..., None]
    atlas = [("albedo (sRGB)", linear_to_srgb(tex["albedo"])),
             ("photo weight", np.repeat(tex["photo_weight"][..., None], 3, -1)),
             ("normals (model frame)", np.where(cov, (tex["normal"] + 1) / 2, 0.5)),
             ("specular k_s x 2", np.repeat(np.clip(2 * tex["specular"][..., None], 0, 1), 3, -1))]
    OUT.mkdir(parents=True, exist_ok=True)
    write_image(OUT / "ict_albedo_astronaut.png", contact_sheet(atlas, columns=2, tile=512))

    # Turntable about the photo camera's +y (yaw 0 = the photo's view), as the pipeline's renders.
    from pnrelight.lightstage.render import ground_truth_passes

    verts = np.asarray(rec.fit.vertices, dtype=np.float64)
    mesh = pipeline.avatar_mesh(rec.model, rec.fit, tex)
    (name, env), = pipeline._load_relight_envmaps(None)[:1]
    center, distance = framing(verts, yfov_deg=25.0, margin=1.05)
    to_camera = -center / np.linalg.norm(center)
    orbit = pipeline._Orbit(pipeline.camera_to_model(rec.fit), center, distance, float(np.degrees(np.arctan2(to_camera[0], to_camera[2]))))
    suns = pipeline.environment_suns(env, orbit.view(mesh, 0.0, 320))  # one exposure (the front view's) for every yaw
    unlit, lit = [], []
    for yaw in YAWS:
        g = orbit.view(mesh, float(yaw), 320)
        unlit.append((f"albedo, yaw {yaw}", pipeline._display(g, ground_truth_passes(g)["albedo"])))
        lit.append((f"relit ({name}), yaw {yaw}", pipeline._display(g, pipeline._shade(g, suns, True), tone_map=True)))
    write_image(OUT / "ict_head_astronaut_views.png", contact_sheet(unlit + lit, columns=len(YAWS), tile=320))
    print("wrote", OUT / "ict_albedo_astronaut.png", OUT / "ict_head_astronaut_views.png")


if __name__ == "__main__":
    main()
