"""Silver: conformed masters, clean usage events and daily features.

`stage` runs the stage; `masters`, `events` and `daily` build the tables; `anomaly`
holds the three anomaly methods and their vote.
"""
