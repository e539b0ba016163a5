"""forge.features"""
