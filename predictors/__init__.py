"""Circuit forecasting: predict from checkpoints 0..k which components form the circuit later.

Modules: problem (ForecastProblem, runs, observations), features, dataset, baselines, lgbm, gnn,
registry (forecasters by name), metrics, evaluate (leave-one-task-out), persist.
"""
