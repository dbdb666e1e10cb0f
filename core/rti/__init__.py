"""Reflectance transformation imaging: PTM, HSH, NeuralRTI teacher and DisK student."""
