# Same targets locally, in CI (.ci/run) and in pre-commit. Run inside the project virtualenv.
.DEFAULT_GOAL := all
sources = src tests bench

.PHONY: install format lint typecheck test test-all all

install:  ## install the package in editable mode with the test tools
	pip install -e '.[test]'

format:  ## rewrite the code: fixable lint findings, then formatting
	ruff check --fix $(sources)
	ruff format $(sources)

lint:  ## fail on lint findings or unformatted code, changing nothing
	ruff check $(sources) && ruff format --check $(sources)

typecheck:  ## mypy --strict, configured in pyproject.toml
	mypy

test:  ## the default test run
	pytest

test-all:  ## every test, whatever the markers (slow end-to-end tests included)
	pytest -m ''

all: lint typecheck test
