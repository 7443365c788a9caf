"""Reporters: turning an analysed run into terminal tables or JSON."""
