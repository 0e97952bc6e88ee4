from honua_plan.cli import run

run()
