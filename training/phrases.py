"""What `phq synth` users say: a small grammar of first-person symptom statements per PHQ-9 item, split
into phrase families, plus the confounders a bag of words reads wrongly and the talk around them.

Families 0-3 of each item are spoken by every user except test users; families 4-5 only by test users
(`TEST_FAMILIES`), so a model is tested on wordings it never trained on. Counter-statements and the
frequency phrases are split the same way. Fixed across seeds: the split of wordings never depends on
the generator's seed. Not for the item model's own phrase lists: copying them would make synthetic
evaluation circular.
"""

from __future__ import annotations

import random
import re

TRAIN_FAMILIES = (0, 1, 2, 3)
TEST_FAMILIES = (4, 5)

# Slots a template may hold; each use draws one value.
SLOTS: dict[str, list[str]] = {
    "time": ["3", "4", "5", "half 2", "half 4"],
    "hours": ["eleven", "twelve", "thirteen", "fourteen"],
    "hobby": ["guitar", "bike", "sketchbook", "camera", "running shoes", "knitting"],
    "friend": ["Sam", "Priya", "Jo", "Alex", "Marta"],
    "meal": ["breakfast", "lunch", "dinner"],
    "snack": ["crisps", "biscuits", "cereal", "toast", "chocolate"],
    "task": ["the report", "my emails", "that essay", "the spreadsheet", "the slides"],
    "show": ["a film", "an episode", "a podcast", "the match"],
}

# Per item (questionnaire order): six families of present, first-person statements (plain and
# indirect), past-tense clauses and third-person predicates (for confounders), counter-statements
# (being fine, including denials that reuse the symptom's words), and what an assistant calls it.
ITEMS: list[dict] = [
    dict(  # 1 little interest or pleasure
        families=[
            ["I haven't picked up my {hobby} in weeks, I just can't be bothered",
             "my {hobby} is sitting in the corner, I don't care about it anymore",
             "I used to love my {hobby} and now it does nothing for me"],
            ["nothing feels fun anymore", "I don't really enjoy anything",
             "stuff I used to look forward to just feels flat"],
            ["{friend} invited me out and I said no, I just didn't want to",
             "I bailed on the pub quiz, I couldn't care less about it",
             "I skipped {friend}'s birthday, I wasn't interested"],
            ["I'm just going through the motions", "I put {show} on and didn't even watch it, I didn't care",
             "I can't get excited about anything"],
            ["I bought gig tickets months ago and now I'm not even bothered about going",
             "had my favourite meal and it tasted of nothing",
             "the sunshine, the beach, none of it does anything for me now"],
            ["everything is just meh", "I sat on the sofa all weekend, nothing appealed",
             "I've lost interest in pretty much everything I used to do"],
        ],
        past=["had zero interest in anything", "stopped caring about my {hobby}", "couldn't enjoy anything"],
        other=["has stopped enjoying anything", "says nothing is fun anymore", "can't be bothered with anything"],
        fine=["I've been really enjoying my {hobby} lately", "I had a great time at {friend}'s party",
              "I'm actually looking forward to the weekend", "I haven't lost interest in things, I'm into my hobbies",
              "I loved the gig on Saturday", "I still get a kick out of my {hobby}"],
        echo=["losing interest in things you used to enjoy", "not getting pleasure from things"],
    ),
    dict(  # 2 feeling down, depressed or hopeless
        families=[
            ["I feel really down", "I've been so low", "I feel sad and heavy"],
            ["I feel like nothing is going to get better", "everything feels hopeless",
             "I can't see a way out of this"],
            ["I cried in the car park at work", "I keep tearing up for no reason", "I ended up crying in the shower"],
            ["everything feels grey", "there's a weight on my chest I can't shake", "I feel empty inside"],
            ["I just sat in the dark after work feeling rubbish", "what's the point, it's never going to change",
             "I feel like I'm at the bottom of a well"],
            ["my mood is in the gutter", "I woke up with that sinking feeling", "I'm miserable, properly miserable"],
        ],
        past=["felt completely hopeless", "was really depressed", "cried every day"],
        other=["is really down at the moment", "says everything feels hopeless", "keeps crying"],
        fine=["my mood has been good", "I don't feel hopeless at all", "I'm in a pretty good place",
              "I'm not feeling down, honestly", "I feel hopeful about the new job", "I've been cheerful"],
        echo=["feeling down or hopeless", "low mood"],
    ),
    dict(  # 3 sleep
        families=[
            ["I was up till {time} scrolling", "I didn't get to sleep till {time}",
             "I was still awake at {time}, staring at my phone"],
            ["I lay there staring at the ceiling for hours", "I tossed and turned all night",
             "I couldn't switch my brain off to sleep"],
            ["I woke at {time} and that was it", "I woke up at {time} and couldn't get back to sleep"],
            ["I slept {hours} hours and still feel wrecked", "I slept through three alarms",
             "I stayed in bed till the afternoon"],
            ["the birds were singing before I nodded off", "I watched the whole night go by from my pillow",
             "my body clock is totally broken"],
            ["I napped most of the day away", "I counted sheep, did the breathing, nothing, I was wide awake",
             "I only slept in bits and pieces on the sofa"],
        ],
        past=["couldn't sleep at all", "was up till {time} every night", "slept all day"],
        other=["can't sleep", "is up till {time} every night", "lies awake for hours", "sleeps till noon"],
        fine=["I'm sleeping fine", "I slept like a log", "I got a solid eight hours", "no trouble sleeping",
              "I haven't been lying awake at all", "I'm not struggling to sleep"],
        echo=["trouble sleeping", "lying awake at night"],
    ),
    dict(  # 4 tired, little energy
        families=[
            ["I'm exhausted", "I have no energy at all", "I'm shattered"],
            ["even a shower wipes me out", "I had to sit down halfway through the washing up",
             "carrying the shopping upstairs knocked me out"],
            ["I wake up already drained", "I'm running on empty", "my body feels like lead"],
            ["I needed a nap after lunch just to function", "I was too tired to cook so I had cereal for dinner"],
            ["my battery is at one percent", "I'm dragging myself through the day", "my legs feel like concrete"],
            ["I'm knackered from the moment I open my eyes", "I had to lie down after the school run",
             "everything takes so much effort, I'm spent"],
        ],
        past=["was exhausted all the time", "had no energy", "couldn't get out of bed"],
        other=["is exhausted", "has no energy these days", "is always tired"],
        fine=["I've got plenty of energy", "I feel energetic", "I'm not tired at all",
              "I went for a long run and felt great", "energy's fine", "I'm full of beans"],
        echo=["low energy or fatigue", "feeling tired all the time"],
    ),
    dict(  # 5 poor appetite or overeating
        families=[
            ["I skipped {meal}, I just wasn't hungry", "I've barely eaten today", "food doesn't interest me"],
            ["I ate a whole packet of {snack} in one go", "I've been stress eating", "I keep raiding the fridge at night"],
            ["I had to force myself to eat {meal}", "I had two bites of {meal} and pushed it away"],
            ["I ordered takeaway twice today", "I ate {snack} for dinner standing at the counter"],
            ["my jeans are loose, I'm just not eating", "the fridge is empty and I don't even care",
             "I keep grazing on junk all evening"],
            ["I've lost my appetite completely", "I keep forgetting to eat until I feel shaky",
             "I binged on {snack} till I felt sick"],
        ],
        past=["stopped eating properly", "lost loads of weight", "ate way too much"],
        other=["isn't eating", "has stopped eating properly", "keeps skipping meals", "eats way too much"],
        fine=["my appetite is normal", "I'm eating well", "I cooked a proper dinner and enjoyed it",
              "no problems with food", "I'm not skipping meals", "I had a lovely lunch"],
        echo=["changes in appetite", "eating more or less than usual"],
    ),
    dict(  # 6 feeling bad about yourself
        families=[
            ["I feel like a failure", "I'm useless", "I'm such a disappointment"],
            ["I keep letting my family down", "everyone can see I'm not good enough", "I let the whole team down"],
            ["I hate myself", "I look in the mirror and can't stand what I see", "I'm so stupid"],
            ["everyone else is doing better than me", "I'm not good at anything", "I'm a burden"],
            ["I'm a waste of space", "why would anyone want me on their team", "I'm rubbish at everything"],
            ["I always mess everything up", "I feel like a fraud at work", "I'm so ashamed of myself"],
        ],
        past=["felt like a total failure", "hated myself", "thought I was useless"],
        other=["feels like a failure", "feels worthless", "is always putting themselves down"],
        fine=["I feel okay about myself", "I'm proud of what I did", "I don't feel like a failure",
              "I'm being kinder to myself", "I did well at work", "I'm not useless, I know that"],
        echo=["feeling bad about yourself", "feeling like a failure"],
    ),
    dict(  # 7 trouble concentrating
        families=[
            ["I read the same page five times", "I can't get through a paragraph", "I lost track of a two-line email"],
            ["I couldn't focus on {task} at all", "my mind keeps drifting in meetings", "I stared at {task} for an hour"],
            ["I can't follow a TV show", "I put {show} on and lost the plot in minutes"],
            ["my head is all over the place", "I forgot what I was saying mid-sentence", "I can't concentrate"],
            ["my brain is like soup", "I keep walking into rooms and forgetting why",
             "it's like my thoughts are wading through fog"],
            ["I missed a deadline because I couldn't think straight", "I had to start {task} over three times",
             "I zone out every few minutes"],
        ],
        past=["couldn't focus on anything", "failed exams because I couldn't concentrate"],
        other=["can't concentrate", "can't focus at work", "keeps zoning out"],
        fine=["I can focus fine", "my concentration is good", "I finished {task} in one go",
              "work is going smoothly, I'm focused", "I read a whole book", "no trouble concentrating"],
        echo=["trouble concentrating", "difficulty focusing"],
    ),
    dict(  # 8 moving or speaking slowly, or restless
        families=[
            ["I feel slowed down, like moving through mud", "everything I do is in slow motion",
             "{friend} said I'm talking really slowly"],
            ["I can't sit still", "I'm pacing around the flat", "I'm fidgety and jumpy"],
            ["my boss asked if I was okay because I was so slow", "people keep saying I seem sluggish"],
            ["my leg won't stop bouncing", "I keep getting up and sitting down"],
            ["I've been moving like a sloth", "I was wandering from room to room for no reason",
             "it takes me ages to get a sentence out"],
            ["I'm all jittery, can't settle", "I feel like I'm underwater, everything is slow",
             "I was tapping my fingers nonstop"],
        ],
        past=["was so restless I couldn't sit still", "was moving in slow motion"],
        other=["can't sit still", "seems slowed down", "is pacing around all day"],
        fine=["I feel settled", "I'm not restless", "I feel calm", "I'm not sluggish at all",
              "I'm moving at normal speed", "I sat and read for hours, nice and relaxed"],
        echo=["feeling slowed down or restless", "restlessness"],
    ),
    dict(  # 9 thoughts of death or self-harm
        families=[
            ["sometimes I think everyone would be better off without me", "I've had thoughts of not wanting to be here",
             "I've thought about hurting myself"],
            ["I wish I could just disappear", "I keep thinking it would be easier if I wasn't around"],
            ["I thought about just not waking up", "I looked at the pills in the cupboard and thought about it"],
            ["I don't see the point of being alive", "part of me wants it all to stop for good"],
            ["I wondered if anyone would notice if I was gone", "I've been thinking about ending it",
             "I stood on the bridge for a while and thought about it"],
            ["I feel like I should just vanish for good", "dark thoughts about not being here keep coming back",
             "sometimes I think about cutting myself"],
        ],
        past=["had thoughts of not wanting to be here", "thought about hurting myself"],
        other=["has been talking about not wanting to live", "has thoughts of hurting themselves"],
        fine=["I haven't had any dark thoughts", "I don't have thoughts of hurting myself", "I want to be here",
              "I'm safe, no thoughts like that", "I've got a lot to live for", "no dark thoughts at all"],
        echo=["thoughts of not wanting to be here", "thoughts of hurting yourself"],
    ),
]

# How often, from the days with the symptom in the last seven (today included): (lowest count, train
# wordings, test wordings). Appended to a present statement, so a reader can count unseen days.
SPANS: list[tuple[int, list[str], list[str]]] = [
    (2, ["again", "a couple of times this week", "a few days this week"], ["twice this week", "now and then this week"]),
    (4, ["most days this week", "more often than not lately"], ["five days out of seven", "the majority of this week"]),
    (7, ["every day this week", "all week"], ["seven days straight", "every single day lately"]),
]
HEDGES = (["maybe {s}? not sure", "{s}, I think, kind of"], ["{s}, sort of, might be overthinking it"])
OPENERS = ["", "Honestly, ", "I don't know, ", "To be honest ", "So ", "Ugh, ", "Yeah, "]

# Confounders: symptom words that are not the user's present symptom.
PAST_FRAMES = ["{when} I {past}, but that's behind me now.", "Back {when} I {past}. Not anymore though.",
               "I remember {when} I {past}, so glad that's over."]
WHEN = ["last year", "a few months ago", "at uni", "when I was a teenager", "two years ago"]
PEOPLE = [("my mum", "she"), ("my dad", "he"), ("my sister", "she"), ("my brother", "he"), ("my flatmate", "she"),
          ("my friend Jo", "she"), ("my mate Alex", "he"), ("my partner", "he"), ("a colleague", "she")]
OTHER_FRAMES = ["{Who} {other} at the moment.", "I'm worried about {who}, {pron} {other}.",
                "{Who} told me {pron} {other}, I didn't know what to say."]
HYPOTHETICAL_FRAMES = ["If I {past} before the interview, I don't know what I'd do.",
                       "I'd hate to get to a point where I {past} like before.",
                       "Imagine if I {past} during exams, nightmare."]
QUESTION_FRAMES = ["What would you say to a friend who {other}?", "Is it normal that {who} {other}?",
                   "How can I help {who}? {Pron} {other}."]

# Confounders that reuse a user's own symptom sentence word for word ({core}): a denial, someone else's
# words, or the user's words from long ago. Only reading the frame tells them from a present mention.
DENIAL_FRAMES = ["I wouldn't say {core}, not at all.", "It's not like {core} or anything.",
                 "People assume {core}, but honestly no."]
QUOTE_FRAMES = ["{Who} texted me: '{core}'.", "{Who} keeps saying '{core}' and I don't know how to help."]
PAST_QUOTE_FRAMES = ["A year ago I'd have told you '{core}', but not now.",
                     "I found my old diary, every page was '{core}', glad that's over."]

GREETINGS = ["Hi", "Hey", "hello again", "Hi, it's me", "hey there", "Morning", "Evening"]
FILLER = [
    "Work has been busy, we're migrating the whole billing system and the deadline keeps moving.",
    "I watched a documentary about octopuses, they're so clever, they can open jars.",
    "My sister is getting married in June so there's a lot of planning, the venue is by a lake.",
    "We're thinking about getting a second cat but the first one is very territorial.",
    "The football on Sunday was wild, we scored in the last minute.",
    "I'm trying to learn Spanish with an app, I'm on a 40 day streak.",
    "I repotted all my houseplants, the monstera finally has new leaves.",
    "My landlord still hasn't fixed the heating, I've emailed three times.",
    "I'm planning a trip to Lisbon, any idea what's worth seeing?",
    "I made lasagna from scratch for the first time, it took all afternoon.",
    "My manager wants me to present the quarterly numbers, which is new for me.",
    "The bus was late again, I think they changed the timetable.",
    "I'm reading a fantasy series my friend recommended, the world-building is great.",
    "My parents want me to visit for the holidays, it's a long drive.",
    "I started running with a group on Thursdays, mostly for the coffee after.",
    "The neighbours are renovating and the drilling starts at eight every morning.",
    "It's been raining non-stop, the garden is basically a pond.",
    "I finally sorted out my car insurance, what a saga.",
    "We had a team lunch at the new ramen place, pretty good.",
    "My nephew turned six, the party was chaos.",
]
ASSISTANT = [
    "Thanks for telling me. How has the rest of your week been?",
    "That sounds like a lot to hold. What helps you most on days like that?",
    "I'm glad you shared that. Would you like to talk more about it?",
    "That sounds interesting! How did it go?",
    "It makes sense that you'd feel that way. What would a small next step look like?",
    "Let's take it one step at a time. What's on your mind right now?",
    "I'm here to listen. Tell me more if you like.",
]
# The assistant using symptom words, whatever the user has: psychoeducation, questions, reflections.
ASSISTANT_ECHO = [
    "Many people notice {e} when life gets stressful. Have you noticed anything like that?",
    "Some people experience {e}; if that ever happens to you, we can work on it together.",
    "It can help to keep an eye on {e}. How has that been for you?",
    "A lot of people talk to me about {e}. Is that something you recognise?",
    "I'm glad {e} hasn't come up today.",
]


def fill(rng: random.Random, template: str, **fixed: str) -> str:
    """The template with each `{slot}` drawn from SLOTS (or given in `fixed`)."""
    def one(m: re.Match) -> str:
        name = m.group(1)
        return fixed[name] if name in fixed else rng.choice(SLOTS[name])
    return re.sub(r"\{(\w+)\}", one, template)


def families_for(split: str) -> tuple[int, ...]:
    return TEST_FAMILIES if split == "test" else TRAIN_FAMILIES


def half(options: list[str], split: str) -> list[str]:
    """Counter-statements: test users say the odd-numbered ones, everyone else the even-numbered ones."""
    return options[1::2] if split == "test" else options[0::2]


def span_phrase(rng: random.Random, count7: int, split: str) -> str:
    """A frequency phrase true of `count7` days with the symptom in the last seven, or '' for one day."""
    chosen = ""
    for lowest, train, test in SPANS:
        if count7 >= lowest:
            chosen = rng.choice(test if split == "test" else train)
    return chosen


def template_pattern(template: str) -> str:
    """A regex for every filling of `template` (lower case), for readers of this grammar (the stand-in teacher)."""
    out, pos = [], 0
    for m in re.finditer(r"\{(\w+)\}", template):
        out.append(re.escape(template[pos:m.start()].lower()))
        out.append("(?:" + "|".join(re.escape(v.lower()) for v in SLOTS[m.group(1)]) + ")")
        pos = m.end()
    out.append(re.escape(template[pos:].lower()))
    return "".join(out)


def all_phrases() -> list[str]:
    """Every literal piece of the grammar (a tokenizer corpus for tiny test models)."""
    lines = FILLER + ASSISTANT + GREETINGS + OPENERS + WHEN + [w for w, _ in PEOPLE]
    lines += PAST_FRAMES + OTHER_FRAMES + HYPOTHETICAL_FRAMES + QUESTION_FRAMES + ASSISTANT_ECHO
    lines += DENIAL_FRAMES + QUOTE_FRAMES + PAST_QUOTE_FRAMES
    for item in ITEMS:
        for fam in item["families"]:
            lines += fam
        lines += item["past"] + item["other"] + item["fine"] + item["echo"]
    for _, train, test in SPANS:
        lines += train + test
    lines += [v for vs in SLOTS.values() for v in vs]
    return [re.sub(r"\{\w+\}", "", line) for line in lines]
