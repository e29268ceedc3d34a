# Two entry points, each sets itself up: `make demo` and `make test`.
.PHONY: setup demo test lint bench clean

MUJOCO_GL ?= osmesa
export MUJOCO_GL
# One torch thread: these machines have 2 cores and rollouts run beside training.
export OMP_NUM_THREADS ?= 1

setup: .venv/.robopref-synced

.venv/.robopref-synced: pyproject.toml uv.lock scripts/bootstrap.sh
	@bash scripts/bootstrap.sh
	@touch $@

demo: setup
	.venv/bin/robopref demo $(ARGS)

test: setup
	@bash scripts/test_services.sh
	.venv/bin/python -m pytest -q -m "not slow" $(ARGS)

lint: setup
	.venv/bin/ruff check .

bench: setup
	.venv/bin/python benchmarks/env_step_overhead.py
	.venv/bin/python benchmarks/reward_ensemble_throughput.py
	.venv/bin/python benchmarks/sim_arm_steps.py
	.venv/bin/python benchmarks/control_loop_rate.py
	.venv/bin/python benchmarks/record_save_scaling.py
	.venv/bin/python benchmarks/segment_video.py
	.venv/bin/python benchmarks/gw_scaling.py

clean:
	rm -rf .venv runs outputs multirun
