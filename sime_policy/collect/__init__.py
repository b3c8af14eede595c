"""Collecting episodes: policy rollouts (episode loop, batched runner, worker pool, seeding), demos, smoothing.

Import the submodules themselves: this package imports nothing, so the rig can use `seeding` and `loading`
without the simulator.
"""
