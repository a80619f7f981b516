"""Long-horizon task templates: a LIBERO scene plus an ordered list of steps.

A pick-and-place move yields two ground-truth subtasks ("pick up the X", "place the X in/on the
Y"), closing a drawer or a hinged door one ("close the D"), opening a drawer one ("open the D"),
turning a knob on one ("turn on the stove"); the instruction is phrased the way LIBERO phrases its
tasks. Scenes and initial states are LIBERO's own (suite folder + BDDL problem name); the moves need
not be that problem's goal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from atomvla.schemas import Skill


@dataclass(frozen=True)
class Move:
    obj: str  # LIBERO object id, e.g. "alphabet_soup_1"
    obj_name: str  # as LIBERO's language says it, e.g. "alphabet soup"
    target: str  # object id of the receptacle
    target_name: str
    relation: Literal["in", "on"]
    # BDDL region that the success predicate is evaluated against ("in" needs a contain region).
    region: str
    # What the place instruction says before the target where it is not the predicate: "to the
    # left of" a table region, "in" a bowl that LIBERO's goal calls On.
    says: str | None = None


@dataclass(frozen=True)
class CloseDrawer:
    drawer: str  # body of the sliding drawer, e.g. "wooden_cabinet_1_cabinet_top"
    joint: str  # its slide joint; closed is the joint's upper limit
    name: str  # e.g. "top drawer of the cabinet"
    region: str  # BDDL region that the Close predicate is evaluated on


@dataclass(frozen=True)
class OpenDrawer:
    drawer: str  # body of the sliding drawer; its front-most part (the handle) is pinched
    joint: str  # its slide joint; open is the joint's lower limit (closed the upper, as CloseDrawer)
    name: str  # e.g. "top drawer of the cabinet"
    region: str  # BDDL region that the Open predicate is evaluated on


@dataclass(frozen=True)
class CloseDoor:
    door: str  # body of the hinged door, e.g. "microwave_1_microdoorroot"
    joint: str  # its hinge joint (vertical axis); closed is the end of its range nearer 0
    name: str  # e.g. "microwave"
    appliance: str  # object id the Close predicate is evaluated on


@dataclass(frozen=True)
class TurnOn:
    knob: str  # body of the knob, e.g. "flat_stove_1_button"
    joint: str  # its hinge joint (vertical axis); on is past a threshold turning positive
    name: str  # e.g. "stove"
    appliance: str  # object id the Turnon predicate is evaluated on


@dataclass(frozen=True)
class Template:
    name: str
    suite: str
    problem: str
    task: str
    steps: tuple[Move | OpenDrawer | CloseDrawer | CloseDoor | TurnOn, ...]


def subtasks_of(tmpl: Template) -> tuple[tuple[str, Skill], ...]:
    """The (instruction, skill) of each ground-truth subtask of a template, in order."""
    out: list[tuple[str, Skill]] = []
    for step in tmpl.steps:
        if isinstance(step, Move):
            out += [(f"pick up the {step.obj_name}", "pick"),
                    (f"place the {step.obj_name} {step.says or step.relation} the {step.target_name}", "place")]
        elif isinstance(step, TurnOn):
            out.append((f"turn on the {step.name}", "turn"))
        elif isinstance(step, OpenDrawer):
            out.append((f"open the {step.name}", "open"))
        else:
            out.append((f"close the {step.name}", "close"))
    return tuple(out)


def _in_basket(obj: str, name: str) -> Move:
    return Move(obj, name, "basket_1", "basket", "in", "basket_1_contain_region")


def _in_tray(obj: str, name: str) -> Move:
    return Move(obj, name, "wooden_tray_1", "tray", "in", "wooden_tray_1_contain_region")


def _on_plate(obj: str, name: str, plate: str, plate_name: str) -> Move:
    return Move(obj, name, plate, plate_name, "on", plate)


def _on_cabinet(obj: str, name: str) -> Move:
    return Move(obj, name, "wooden_cabinet_1", "cabinet", "on", "wooden_cabinet_1_top_side")


def _on_stove(obj: str, name: str) -> Move:
    return Move(obj, name, "flat_stove_1", "stove", "on", "flat_stove_1_cook_region")


TEMPLATES: tuple[Template, ...] = (
    Template(
        "soup_and_sauce_in_basket",
        "libero_10",
        "LIVING_ROOM_SCENE2_put_both_the_alphabet_soup_and_the_tomato_sauce_in_the_basket",
        "put both the alphabet soup and the tomato sauce in the basket",
        (_in_basket("alphabet_soup_1", "alphabet soup"), _in_basket("tomato_sauce_1", "tomato sauce")),
    ),
    Template(
        "soup_and_butter_in_basket",
        "libero_90",
        "LIVING_ROOM_SCENE2_pick_up_the_butter_and_put_it_in_the_basket",
        "put both the butter and the alphabet soup in the basket",
        (_in_basket("butter_1", "butter"), _in_basket("alphabet_soup_1", "alphabet soup")),
    ),
    Template(
        "soup_and_cheese_in_tray",
        "libero_90",
        "LIVING_ROOM_SCENE3_pick_up_the_cream_cheese_and_put_it_in_the_tray",
        "put both the cream cheese box and the alphabet soup in the tray",
        (_in_tray("cream_cheese_1", "cream cheese box"), _in_tray("alphabet_soup_1", "alphabet soup")),
    ),
    Template(
        "soup_and_cheese_in_basket",
        "libero_10",
        "LIVING_ROOM_SCENE1_put_both_the_alphabet_soup_and_the_cream_cheese_box_in_the_basket",
        "put both the alphabet soup and the cream cheese box in the basket",
        (_in_basket("alphabet_soup_1", "alphabet soup"), _in_basket("cream_cheese_1", "cream cheese box")),
    ),
    Template(
        "ketchup_and_sauce_in_tray",
        "libero_90",
        "LIVING_ROOM_SCENE3_pick_up_the_ketchup_and_put_it_in_the_tray",
        "put both the ketchup and the tomato sauce in the tray",
        (_in_tray("ketchup_1", "ketchup"), _in_tray("tomato_sauce_1", "tomato sauce")),
    ),
    Template(
        "butter_in_drawer_and_close",
        "libero_90",
        "KITCHEN_SCENE10_put_the_butter_at_the_front_in_the_top_drawer_of_the_cabinet_and_close_it",
        "put the butter at the front in the top drawer of the cabinet and close it",
        (
            Move(
                "butter_1",
                "butter at the front",
                "wooden_cabinet_1_cabinet_top",
                "top drawer of the cabinet",
                "in",
                "wooden_cabinet_1_top_region",
            ),
            CloseDrawer(
                "wooden_cabinet_1_cabinet_top",
                "wooden_cabinet_1_top_level",
                "top drawer of the cabinet",
                "wooden_cabinet_1_top_region",
            ),
        ),
    ),
    # One scene per suite family besides those above: LIBERO-Spatial (bowls gripped by the rim),
    # LIBERO-Goal, LIBERO-Object, and LIBERO-90's stacking and drawer kitchens.
    Template(
        "bowl_next_to_ramekin_on_plate",
        "libero_spatial",
        "pick_up_the_black_bowl_next_to_the_ramekin_and_place_it_on_the_plate",
        "pick up the black bowl next to the ramekin and place it on the plate",
        (_on_plate("akita_black_bowl_1", "black bowl", "plate_1", "plate"),),
    ),
    Template(
        "bowl_on_cookie_box_on_plate",
        "libero_spatial",
        "pick_up_the_black_bowl_on_the_cookie_box_and_place_it_on_the_plate",
        "pick up the black bowl on the cookie box and place it on the plate",
        (_on_plate("akita_black_bowl_1", "black bowl", "plate_1", "plate"),),
    ),
    Template(
        "wine_on_cabinet_and_bowl_on_plate",
        "libero_goal",
        "put_the_wine_bottle_on_top_of_the_cabinet",
        "put the wine bottle on top of the cabinet and the black bowl on the plate",
        (_on_cabinet("wine_bottle_1", "wine bottle"), _on_plate("akita_black_bowl_1", "black bowl", "plate_1", "plate")),
    ),
    Template(
        "bowl_on_stove",
        "libero_goal",
        "put_the_bowl_on_the_stove",
        "put the bowl on the stove",
        (_on_stove("akita_black_bowl_1", "bowl"),),
    ),
    Template(
        "bbq_sauce_in_basket",
        "libero_object",
        "pick_up_the_bbq_sauce_and_place_it_in_the_basket",
        "pick up the bbq sauce and place it in the basket",
        (_in_basket("bbq_sauce_1", "bbq sauce"),),
    ),
    Template(
        "milk_in_basket",
        "libero_object",
        "pick_up_the_milk_and_place_it_in_the_basket",
        "pick up the milk and place it in the basket",
        (_in_basket("milk_1", "milk"),),
    ),
    Template(
        "stack_front_bowl_on_middle_bowl",
        "libero_90",
        "KITCHEN_SCENE2_stack_the_black_bowl_at_the_front_on_the_black_bowl_in_the_middle",
        "stack the black bowl at the front on the black bowl in the middle",
        (Move("akita_black_bowl_1", "black bowl at the front", "akita_black_bowl_2", "black bowl in the middle", "on",
              "akita_black_bowl_2"),),
    ),
    Template(
        "close_drawer_and_bowl_on_top",
        "libero_90",
        "KITCHEN_SCENE10_close_the_top_drawer_of_the_cabinet_and_put_the_black_bowl_on_top_of_it",
        "close the top drawer of the cabinet and put the black bowl on top of it",
        (
            CloseDrawer("wooden_cabinet_1_cabinet_top", "wooden_cabinet_1_top_level", "top drawer of the cabinet",
                        "wooden_cabinet_1_top_region"),
            _on_cabinet("akita_black_bowl_1", "black bowl"),
        ),
    ),
    Template(
        "close_drawer_and_ketchup_on_plate",
        "libero_90",
        "KITCHEN_SCENE5_close_the_top_drawer_of_the_cabinet",
        "close the top drawer of the cabinet and put the ketchup on the plate",
        (
            CloseDrawer("white_cabinet_1_cabinet_top", "white_cabinet_1_top_level", "top drawer of the cabinet",
                        "white_cabinet_1_top_region"),
            _on_plate("ketchup_1", "ketchup", "plate_1", "plate"),
        ),
    ),
)


# Kept out of every backend's training and tuning, to choose the default backend on (issue 15):
# LIBERO-90 scenes no template above uses (kitchens 1, 7, 9; living rooms 4, 5, 6) and their objects
# (white bowl, mugs, salad dressing, chocolate pudding), and a three-step task (5 subtasks, a count
# no template above has) in KITCHEN_SCENE10, the one scene shared with TEMPLATES. Not here because
# the scripted motion fails: KITCHEN_SCENE4's bottom drawer (pushing it shut drives the forearm into
# the cabinet's top edge; it stays 5 cm open), the moka pots (wider than the open fingers, no rim to
# pinch), a bowl taken out of a drawer or put into KITCHEN_SCENE5's (not lifted, or not inside), and
# KITCHEN_SCENE10's chocolate pudding (not lifted).
HELDOUT: tuple[Template, ...] = (
    Template(
        "back_butter_in_drawer_close_and_bowl_on_top",
        "libero_90",
        "KITCHEN_SCENE10_put_the_butter_at_the_back_in_the_top_drawer_of_the_cabinet_and_close_it",
        "put the butter at the back in the top drawer of the cabinet, close it and put the black bowl on top of the cabinet",
        (
            Move("butter_2", "butter at the back", "wooden_cabinet_1_cabinet_top", "top drawer of the cabinet",
                 "in", "wooden_cabinet_1_top_region"),
            CloseDrawer("wooden_cabinet_1_cabinet_top", "wooden_cabinet_1_top_level", "top drawer of the cabinet",
                        "wooden_cabinet_1_top_region"),
            _on_cabinet("akita_black_bowl_1", "black bowl"),
        ),
    ),
    Template(
        "pudding_and_dressing_in_tray",
        "libero_90",
        "LIVING_ROOM_SCENE4_pick_up_the_chocolate_pudding_and_put_it_in_the_tray",
        "put both the chocolate pudding and the salad dressing in the tray",
        (_in_tray("chocolate_pudding_1", "chocolate pudding"), _in_tray("new_salad_dressing_1", "salad dressing")),
    ),
    Template(
        "mugs_on_plates",
        "libero_10",
        "LIVING_ROOM_SCENE5_put_the_white_mug_on_the_left_plate_and_put_the_yellow_and_white_mug_on_the_right_plate",
        "put the white mug on the left plate and put the yellow and white mug on the right plate",
        (_on_plate("porcelain_mug_1", "white mug", "plate_1", "left plate"),
         _on_plate("white_yellow_mug_1", "yellow and white mug", "plate_2", "right plate")),
    ),
    Template(
        "red_mug_on_plate",
        "libero_90",
        "LIVING_ROOM_SCENE6_put_the_red_mug_on_the_plate",
        "put the red mug on the plate",
        (_on_plate("red_coffee_mug_1", "red mug", "plate_1", "plate"),),
    ),
    Template(
        "white_bowl_from_microwave_on_plate",
        "libero_90",
        "KITCHEN_SCENE7_put_the_white_bowl_on_the_plate",
        "put the white bowl on the plate",
        (_on_plate("white_bowl_1", "white bowl", "plate_1", "plate"),),
    ),
    Template(
        "white_bowl_on_shelf",
        "libero_90",
        "KITCHEN_SCENE9_put_the_white_bowl_on_top_of_the_cabinet",
        "put the white bowl on top of the shelf",
        (Move("white_bowl_1", "white bowl", "wooden_two_layer_shelf_1", "shelf", "on",
              "wooden_two_layer_shelf_1_top_side"),),
    ),
    Template(
        "black_bowl_on_wooden_cabinet",
        "libero_90",
        "KITCHEN_SCENE1_put_the_black_bowl_on_top_of_the_cabinet",
        "put the black bowl on top of the cabinet",
        (_on_cabinet("akita_black_bowl_1", "black bowl"),),
    ),
)


def _stove_on(stove: str = "flat_stove_1") -> TurnOn:
    return TurnOn(f"{stove}_button", f"{stove}_button", "stove", stove)


# A second held-out set (issue 15), made after HELDOUT was scored: no backend has run on it, nobody
# has looked at its features, and the lead scores it once, at the end of a session. Its kinds of
# motion are new to TEMPLATES and HELDOUT: twisting a stove's knob on (before or after a
# pick-and-place), pushing a hinged microwave door shut along its arc, placing beside something (a
# table region: to the left of the plate, in front of the mug), a bowl as the receptacle, a
# three-step task (5 subtasks); LIBERO-Object's floor scene with an object no template moves (orange
# juice). LIBERO-Goal's scene is the one TEMPLATES' two LIBERO-Goal templates use (every LIBERO-Goal
# problem shares it). Scripted motion, LIBERO's initial states 0-5: 6/6 each but the microwave's,
# 1/6: the rim grasp pinches the mug's wall on the robot's right, where this mug's handle points
# (not lifted), or the mug misses its small region. Not here because the scripted motion fails:
# pushing LIBERO-Goal's plate to the front of the stove (the closed fingers slide over its 1 cm rim
# from inside, and its far side is out of the arm's reach at table height), turning a knob off
# (KITCHEN_SCENE8, the only scene with the stove on, has nothing else the script can move: moka
# pots), opening a drawer or the microwave (no hook or side grasp), a mug to the right of the study's
# caddy (STUDY_SCENE1's yellow and white mug 1/3 then 0/6, outside the small region; STUDY_SCENE3's
# red and white mugs 0/3: the grasp lands on the handle, or the mug misses the region), a second
# object into LIBERO-Object's basket after the orange juice (ketchup, chocolate pudding: 0/3, not
# inside the basket's region), and the bowl carried to the plate with the cream cheese in it (0/2:
# the rim grasp does not lift it).
HELDOUT2: tuple[Template, ...] = (
    Template(
        "stove_on_and_cheese_in_bowl",
        "libero_goal",
        "turn_on_the_stove",
        "turn on the stove and put the cream cheese in the bowl",
        (_stove_on(), Move("cream_cheese_1", "cream cheese", "akita_black_bowl_1", "bowl", "on", "akita_black_bowl_1", says="in")),
    ),
    Template(
        "cheese_in_bowl_and_stove_on",
        "libero_goal",
        "put_the_cream_cheese_in_the_bowl",
        "put the cream cheese in the bowl and turn on the stove",
        (Move("cream_cheese_1", "cream cheese", "akita_black_bowl_1", "bowl", "on", "akita_black_bowl_1", says="in"), _stove_on()),
    ),
    Template(
        "stove_on_cheese_in_bowl_and_wine_on_cabinet",
        "libero_goal",
        "put_the_wine_bottle_on_the_rack",
        "turn on the stove, put the cream cheese in the bowl and put the wine bottle on top of the cabinet",
        (_stove_on(), Move("cream_cheese_1", "cream cheese", "akita_black_bowl_1", "bowl", "on", "akita_black_bowl_1", says="in"),
         _on_cabinet("wine_bottle_1", "wine bottle")),
    ),
    Template(
        "stove_on_and_white_bowl_on_it",
        "libero_90",
        "KITCHEN_SCENE9_turn_on_the_stove",
        "turn on the stove and put the white bowl on it",
        (_stove_on(), _on_stove("white_bowl_1", "white bowl")),
    ),
    Template(
        "close_microwave_and_mug_in_front",
        "libero_90",
        "KITCHEN_SCENE6_close_the_microwave",
        "close the microwave and put the yellow and white mug in front of the white mug",
        (CloseDoor("microwave_1_microdoorroot", "microwave_1_microjoint", "microwave", "microwave_1"),
         Move("white_yellow_mug_1", "yellow and white mug", "kitchen_table_porcelain_mug_front_region", "white mug", "on",
              "kitchen_table_porcelain_mug_front_region", says="in front of")),
    ),
    Template(
        "pudding_left_of_plate_and_white_mug_on_plate",
        "libero_90",
        "LIVING_ROOM_SCENE6_put_the_chocolate_pudding_to_the_left_of_the_plate",
        "put the chocolate pudding to the left of the plate and the white mug on the plate",
        (Move("chocolate_pudding_1", "chocolate pudding", "living_room_table_plate_left_region", "plate", "on",
              "living_room_table_plate_left_region", says="to the left of"),
         _on_plate("porcelain_mug_1", "white mug", "plate_1", "plate")),
    ),
    Template(
        "orange_juice_in_basket",
        "libero_object",
        "pick_up_the_orange_juice_and_place_it_in_the_basket",
        "pick up the orange juice and place it in the basket",
        (_in_basket("orange_juice_1", "orange juice"),),
    ),
)


def _wooden_drawer(level: str) -> tuple[str, str, str, str]:
    """(body, slide joint, name, BDDL region) of a drawer of LIBERO's wooden cabinet."""
    return (f"wooden_cabinet_1_cabinet_{level}", f"wooden_cabinet_1_{level}_level", f"{level} drawer of the cabinet",
            f"wooden_cabinet_1_{level}_region")


def _in_wooden_drawer(obj: str, name: str, level: str) -> Move:
    body, _, drawer_name, region = _wooden_drawer(level)
    return Move(obj, name, body, drawer_name, "in", region)


# A third held-out set (issue 15), made after HELDOUT2 was scored, under the same rule: no backend
# runs on it, nobody looks at its features, the lead scores it once. Its new kind of motion is
# opening a drawer (OpenDrawer: a side grasp, the hand turned to point into the drawer, the fingers
# pinching the handle's bar top and bottom, then pulling it along the slide), before or after a
# pick-and-place and with a bowl then put into the opened drawer, and a drawer opened then closed
# again in one task; the middle drawer (the earlier sets close only top drawers). Problems no earlier
# template uses: KITCHEN_SCENE2's (TEMPLATES stacks its bowls in another of its problems) and
# KITCHEN_SCENE1's drawer problem (HELDOUT puts its bowl on the cabinet in another); LIBERO-Goal's
# scene is the one TEMPLATES and HELDOUT2 use. Development ran on LIBERO's initial states 10-15 only.
# Generated (commit 2f65f71, 6 seeds): the drawer opened in every episode that reached it; kept 6/6
# scripted each but KITCHEN_SCENE2's two with the front bowl on the plate first (2/6 and 1/6: the bowl
# misses the plate), human-like 18/42 (the operator's slow grip does not lift the bowls or the cheese).
# Not here because the scripted motion fails: a bowl picked from in front of a drawer already opened
# (KITCHEN_SCENE1's bowl, LIBERO-Goal's: the open drawer hangs over it and blocks the hand), opening
# LIBERO-Goal's top drawer after moving the bowl (the arm is blocked short of open), KITCHEN_SCENE4's
# white cabinet (the forearm meets the wine rack while pulling: open 1 in 2, the bowl then slips
# out), the bottom drawer (the side-turned hand is as tall as the handle is above the table), the
# bowl at the back of KITCHEN_SCENE2 into the drawer (not lifted), a bowl put on top of the cabinet
# before opening its drawer (the drawer did not open, 0/2), and opening the microwave (not tried: its
# door needs a pull round the hinge, which was not written in time).
HELDOUT3: tuple[Template, ...] = (
    Template(
        "bowl_on_plate_and_open_top_drawer",
        "libero_90",
        "KITCHEN_SCENE1_open_the_top_drawer_of_the_cabinet",
        "put the black bowl on the plate and open the top drawer of the cabinet",
        (_on_plate("akita_black_bowl_1", "black bowl", "plate_1", "plate"), OpenDrawer(*_wooden_drawer("top"))),
    ),
    Template(
        "open_top_drawer_and_front_bowl_in_it",
        "libero_90",
        "KITCHEN_SCENE2_open_the_top_drawer_of_the_cabinet",
        "open the top drawer of the cabinet and put the black bowl at the front in it",
        (OpenDrawer(*_wooden_drawer("top")), _in_wooden_drawer("akita_black_bowl_1", "black bowl at the front", "top")),
    ),
    Template(
        "open_top_drawer_and_middle_bowl_in_it",
        "libero_90",
        "KITCHEN_SCENE2_put_the_middle_black_bowl_on_the_plate",
        "open the top drawer of the cabinet and put the middle black bowl in it",
        (OpenDrawer(*_wooden_drawer("top")), _in_wooden_drawer("akita_black_bowl_2", "middle black bowl", "top")),
    ),
    Template(
        "front_bowl_on_plate_and_open_top_drawer",
        "libero_90",
        "KITCHEN_SCENE2_put_the_black_bowl_at_the_front_on_the_plate",
        "put the black bowl at the front on the plate and open the top drawer of the cabinet",
        (_on_plate("akita_black_bowl_1", "black bowl at the front", "plate_1", "plate"), OpenDrawer(*_wooden_drawer("top"))),
    ),
    Template(
        "open_top_drawer_front_bowl_in_it_and_close",
        "libero_90",
        "KITCHEN_SCENE2_put_the_black_bowl_at_the_back_on_the_plate",
        "open the top drawer of the cabinet, put the black bowl at the front in it and close it",
        (OpenDrawer(*_wooden_drawer("top")), _in_wooden_drawer("akita_black_bowl_1", "black bowl at the front", "top"),
         CloseDrawer(*_wooden_drawer("top"))),
    ),
    Template(
        "front_bowl_on_plate_open_top_drawer_and_middle_bowl_in_it",
        "libero_90",
        "KITCHEN_SCENE2_stack_the_middle_black_bowl_on_the_back_black_bowl",
        "put the black bowl at the front on the plate, open the top drawer of the cabinet and put the middle black bowl in it",
        (_on_plate("akita_black_bowl_1", "black bowl at the front", "plate_1", "plate"), OpenDrawer(*_wooden_drawer("top")),
         _in_wooden_drawer("akita_black_bowl_2", "middle black bowl", "top")),
    ),
    Template(
        "cheese_in_bowl_and_open_middle_drawer",
        "libero_goal",
        "open_the_middle_drawer_of_the_cabinet",
        "put the cream cheese in the bowl and open the middle drawer of the cabinet",
        (Move("cream_cheese_1", "cream cheese", "akita_black_bowl_1", "bowl", "on", "akita_black_bowl_1", says="in"),
         OpenDrawer(*_wooden_drawer("middle"))),
    ),
)


def template(name: str) -> Template:
    """A template of TEMPLATES, HELDOUT, HELDOUT2 or HELDOUT3 by name."""
    known = (*TEMPLATES, *HELDOUT, *HELDOUT2, *HELDOUT3)
    for t in known:
        if t.name == name:
            return t
    raise KeyError(f"unknown template {name!r}; known: {[t.name for t in known]}")
