"""HTTP plumbing shared by every role: body limits, probes, metrics, error shape."""
