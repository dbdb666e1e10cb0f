# Two entry points: `make demo` and `make test`; both set up .venv from nothing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONHASHSEED := 0
export PYOPENGL_PLATFORM ?= egl

.PHONY: setup demo demo-rti demo-avatar test bench extension clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[learn,avatar,io,lightstage,scale,dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup demo-rti demo-avatar

# RTI: fit HSH and a NeuralRTI teacher on the bundled synthetic example, relight, write previews.
demo-rti: setup
	$(PY) -m pnrelight_cli rti fit assets/examples/rti_synthetic --basis hsh --terms 9 -o demo_out/rti_hsh
	$(PY) -m pnrelight_cli rti fit assets/examples/rti_synthetic --basis neural --epochs 12 -o demo_out/rti_teacher
	$(PY) -m pnrelight_cli rti distill demo_out/rti_teacher assets/examples/rti_synthetic --epochs 12 -o demo_out/rti_student
	$(PY) -m pnrelight_cli rti relight demo_out/rti_student --light 0.5 0.3 -o demo_out/rti_student_relit.png
	$(PY) -m pnrelight_cli rti eval demo_out/rti_student assets/examples/rti_synthetic/test --json demo_out/rti_student_eval.json
	@echo "demo outputs in demo_out/ (previews: demo_out/*/preview.png)"

# Avatar: skimage's astronaut (it ships inside scikit-image; written to demo_out/astronaut.png) -> demo_out/avatar/.
demo-avatar: setup
	$(PY) -c "from skimage import data; from pnrelight.imageio import write_image; write_image('demo_out/astronaut.png', data.astronaut())"
	$(PY) -m pnrelight_cli avatar demo_out/astronaut.png -o demo_out/avatar
	@echo "avatar in demo_out/avatar/ (avatar.glb, textures/, renders/, preview.png)"
	$(PY) -m pnrelight_cli relight demo_out/astronaut.png --avatar demo_out/avatar --envs sunset forest studio -o demo_out/astronaut_relit.png
	@echo "the photo relit under three maps: demo_out/astronaut_relit.png"

test: setup
	$(PY) -m pytest -q -ra tests

bench: setup
	$(PY) benchmarks/rti_bench.py
	$(PY) benchmarks/avatar_bench.py
	$(PY) benchmarks/avatar_quality.py
	$(PY) benchmarks/avatar_synthetic_heads.py

# Blender extension: core wheel + add-on -> dist/pnrelight-<version>.zip, validated with bpy's blender_ext.py.
extension: setup
	$(PY) blender_addon/build.py

clean:
	rm -rf demo_out build dist *.egg-info
