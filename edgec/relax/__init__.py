"""Everything that touches Apache TVM: the only subpackage that imports tvm (lazily)."""
