# On a fresh machine `make demo` and `make test` are the whole set-up: each creates .venv on first use.
PY := .venv/bin/python
VENV_STAMP := .venv/.installed

.PHONY: demo test bench docs lint clean

$(VENV_STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	# torch/torchvision first, at the tested versions
	$(PY) -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install -q -e ".[dev,docs]"
	touch $(VENV_STAMP)

demo: $(VENV_STAMP)
	.venv/bin/ghostkit train --data digits --out runs/demo --exist-ok
	.venv/bin/ghostkit val --weights runs/demo/best.ckpt --data digits
	.venv/bin/ghostkit predict --weights runs/demo/best.ckpt --source runs/demo/samples

test: $(VENV_STAMP)
	$(PY) -m ruff check ghostkit tests benchmarks
	$(PY) -m pytest -n 2 -q

bench: $(VENV_STAMP)
	$(PY) benchmarks/backbone_speed.py

# the API reference (from the docstrings), design map and benchmarks, built into site/; warnings are errors
docs: $(VENV_STAMP)
	$(PY) -m mkdocs build --strict

lint: $(VENV_STAMP)
	$(PY) -m ruff check ghostkit tests benchmarks
	$(PY) -m ruff format --check ghostkit tests benchmarks

clean:
	rm -rf .venv runs site
