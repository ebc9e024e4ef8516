"""Behavioral-cloning testbed for highway-env.

Data flows one way: expert -> demonstrations -> BC trainer -> policy -> rollout harness
-> metrics -> plots. Importing the package has no side effects.
"""

__version__ = "0.1.0"
