from honua_plan.cli import main

main(prog_name="honua")
