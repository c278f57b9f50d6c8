# The two commands the README opens with: `make app` and `make test`.
.PHONY: setup app test bench repro

setup:
	bash scripts/setup.sh

app: setup
	.venv/bin/streamlit run app/main.py --server.address 127.0.0.1 --server.headless true

test:
	bash scripts/setup.sh --browser --real-models
	.venv/bin/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder

bench: setup
	.venv/bin/python bench/run_cpu.py
