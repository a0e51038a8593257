"""Stage: the gradient map. :mod:`~ogaudit.map.layout` lays gradients out in 2-D (UMAP or PCA);
:mod:`~ogaudit.map.density` draws a big map as a density image and selects inside a box or lasso."""
