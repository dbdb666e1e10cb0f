"""pnrelight: import RTI models (PTM, HSH, NeuralRTI) as relightable planes and avatars as relightable heads;
virtual light stages and OLAT datasets.

A Blender 4.2+ extension (see blender_manifest.toml); the core comes from the bundled
``pnrelight`` wheel.
"""
from . import avatar, lightstage, operators, panel, preferences, properties

_modules = (preferences, properties, operators, panel, lightstage, avatar)


def register():
    for module in _modules:
        module.register()


def unregister():
    for module in reversed(_modules):
        module.unregister()
