"""Scenarios: YAML files that run an experiment over a matrix of parameters.

The pipeline: :func:`~netlab.scenario.schema.load_scenario` (validate, or
ScenarioError before anything runs) -> :func:`~netlab.scenario.matrix.plan_runs`
-> :func:`~netlab.scenario.runner.run_scenario` (typed rows per run, time
bounds, Ctrl-C) -> :func:`~netlab.scenario.results.build_document` and
:func:`~netlab.scenario.results.save_document` (results/*.json + .md) ->
:mod:`netlab.scenario.render` (tables).
"""
