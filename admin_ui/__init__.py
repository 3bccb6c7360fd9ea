"""Admin UI layer: the administrator console and self-service account pages.

Server-rendered HTML on top of every lower layer. Imports anything below it;
nothing imports it except the composition root ``idp.app``.
"""
