"""Training: models and losses, model I/O, the training loop (float then QAT), the teacher's soft targets, the
model card and the bundling of a family member. TensorFlow loads inside these modules, never at import of the
package."""
