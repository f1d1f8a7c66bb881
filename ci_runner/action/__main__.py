from ci_runner.action.main import action

action()
