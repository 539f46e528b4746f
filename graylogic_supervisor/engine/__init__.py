"""The playbook engine: the action interface, the built-in actions and the runner."""
