"""Infrastructure shared by every part of the project: errors, configs, run directories, devices."""
