"""The end-to-end demo: a simulated on-prem source, driven through the whole path on the local stack."""
