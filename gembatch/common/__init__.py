"""Small pieces every part may use: atomic files, hashing, time, job states, errors, locations,
shared value types.
"""
