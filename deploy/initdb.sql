-- The second database of the stack: Optuna's study storage (MLflow's is POSTGRES_DB).
CREATE DATABASE optuna;
