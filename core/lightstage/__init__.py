"""Virtual light stage: light layouts, the shadowing OLAT renderer, environment relighting from OLAT
and the dataset format. Conventions (one place): see ``docs/lightstage.md``."""
