"""The architecture zoo: the family's architectures (`vqa/model/architectures/`) trained on the same data with
the same budget, measured and compared. `python -m vqa zoo` builds it into `weights/zoo/`."""

from vqa.training.budget import fit_to_budget
from vqa.zoo.members import MEMBERS, member_recipe
from vqa.zoo.run import train_zoo

__all__ = ["MEMBERS", "fit_to_budget", "member_recipe", "train_zoo"]
