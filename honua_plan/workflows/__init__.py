"""The verbs over a workspace: apply, promote, recover, dev. Each returns a typed
result; printing is the console's.
"""
