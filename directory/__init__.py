"""Directory layer: the authoritative record of people and organisations.

Owns org units (city > district > school > campus > grade > class,
departments), people, accounts and their login identifiers, affiliations
(person x org unit x role, with history), guardian links, the registry of
school applications, bulk import and SCIM 2.0. Imports only ``core``.
"""
