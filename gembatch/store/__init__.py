"""The data layer: schema, opening and migrating the database, every query and write, leases."""
