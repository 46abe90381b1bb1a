"""The consumer role: an agency's replica of the resources it is entitled to, by subscription or bundles."""
