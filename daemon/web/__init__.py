"""The central station (`clonusd web`): server and page."""
