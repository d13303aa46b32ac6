"""Held-out problems: the source of truth for data/problems/test.jsonl.

Same style as specs_train.py, different tasks. These never enter the
organism's pre-training corpus, so a score on them measures transfer, not
recall. Expected values are written by hand.
"""

TEST = [
    dict(
        name="sumOdds",
        args="nums: List[int]",
        ret="int",
        desc="Return the sum of the odd numbers in nums.",
        body="""
total = 0
for x in nums:
    if x % 2 != 0:
        total += x
return total""",
        tests=[("[1, 2, 3, 4]", 4), ("[]", 0), ("[2, 8]", 0), ("[-3, 5, 6]", 2)],
    ),
    dict(
        name="runningMin",
        args="nums: List[int]",
        ret="List[int]",
        desc="Return a list where element i is the smallest value in nums[0..i].",
        body="""
result = []
for x in nums:
    if not result or x < result[-1]:
        result.append(x)
    else:
        result.append(result[-1])
return result""",
        tests=[
            ("[3, 1, 2, 0]", [3, 1, 1, 0]),
            ("[]", []),
            ("[1, 4, 5]", [1, 1, 1]),
            ("[-1, -3]", [-1, -3]),
        ],
    ),
    dict(
        name="countConsonants",
        args="s: str",
        ret="int",
        desc="Count the letters in s that are not vowels (a, e, i, o, u), ignoring case.",
        body="""
count = 0
for ch in s.lower():
    if ch.isalpha() and ch not in "aeiou":
        count += 1
return count""",
        tests=[("'hello'", 3), ("'AEIOU'", 0), ("'a b c'", 2), ("''", 0), ("'Rhythm'", 6)],
    ),
    dict(
        name="maxDifference",
        args="nums: List[int]",
        ret="int",
        desc="Return the largest value minus the smallest value of the non-empty list nums.",
        body="""
return max(nums) - min(nums)""",
        tests=[("[1, 5, 3]", 4), ("[7]", 0), ("[-2, 4]", 6), ("[9, 1, 1]", 8)],
    ),
    dict(
        name="isLeapYear",
        args="year: int",
        ret="bool",
        desc="Return True if year is a leap year: divisible by 4, except years divisible by 100 that are not divisible by 400.",
        body="""
if year % 400 == 0:
    return True
if year % 100 == 0:
    return False
return year % 4 == 0""",
        tests=[("2024", True), ("1900", False), ("2000", True), ("2023", False)],
    ),
    dict(
        name="removeVowels",
        args="s: str",
        ret="str",
        desc="Return s with every vowel (a, e, i, o, u, either case) removed.",
        body="""
return "".join(ch for ch in s if ch.lower() not in "aeiou")""",
        tests=[
            ("'hello'", "hll"),
            ("'AEIOU'", ""),
            ("'xyz'", "xyz"),
            ("'Banana Bread'", "Bnn Brd"),
        ],
    ),
    dict(
        name="sumOfSquares",
        args="n: int",
        ret="int",
        desc="Return 1*1 + 2*2 + ... + n*n for a non-negative integer n.",
        body="""
total = 0
for i in range(1, n + 1):
    total += i * i
return total""",
        tests=[("3", 14), ("0", 0), ("1", 1), ("5", 55)],
    ),
    dict(
        name="countNegatives",
        args="nums: List[int]",
        ret="int",
        desc="Count how many numbers in nums are less than zero.",
        body="""
count = 0
for x in nums:
    if x < 0:
        count += 1
return count""",
        tests=[("[-1, 2, -3]", 2), ("[]", 0), ("[0, 1]", 0), ("[-5, -5]", 2)],
    ),
    dict(
        name="isPerfectSquare",
        args="n: int",
        ret="bool",
        desc="Return True if the non-negative integer n is the square of an integer.",
        body="""
r = 0
while r * r < n:
    r += 1
return r * r == n""",
        tests=[("16", True), ("0", True), ("15", False), ("1", True), ("26", False)],
    ),
    dict(
        name="dotProduct",
        args="a: List[int], b: List[int]",
        ret="int",
        desc="Return the dot product of the equal-length lists a and b.",
        body="""
total = 0
for x, y in zip(a, b):
    total += x * y
return total""",
        tests=[
            ("[1, 2, 3], [4, 5, 6]", 32),
            ("[], []", 0),
            ("[2], [-3]", -6),
            ("[1, 0], [0, 1]", 0),
        ],
    ),
    dict(
        name="longestRun",
        args="nums: List[int]",
        ret="int",
        desc="Return the length of the longest run of equal adjacent values in nums.",
        body="""
best = run = 0
for i, x in enumerate(nums):
    run = run + 1 if i > 0 and x == nums[i - 1] else 1
    best = max(best, run)
return best""",
        tests=[
            ("[1, 1, 2, 2, 2, 3]", 3),
            ("[]", 0),
            ("[5]", 1),
            ("[1, 2, 3]", 1),
            ("[4, 4, 1, 4]", 2),
        ],
    ),
    dict(
        name="swapCase",
        args="s: str",
        ret="str",
        desc="Return s with upper-case letters made lower-case and lower-case letters made upper-case.",
        body="""
result = ""
for ch in s:
    result += ch.lower() if ch.isupper() else ch.upper()
return result""",
        tests=[("'Hello'", "hELLO"), ("''", ""), ("'ABC def'", "abc DEF"), ("'a1B'", "A1b")],
    ),
    dict(
        name="indexOf",
        args="nums: List[int], target: int",
        ret="int",
        desc="Return the index of the first occurrence of target in nums, or -1 if it is absent.",
        body="""
for i, x in enumerate(nums):
    if x == target:
        return i
return -1""",
        tests=[("[4, 5, 6], 5", 1), ("[], 1", -1), ("[1, 2, 1], 1", 0), ("[3, 3], 7", -1)],
    ),
    dict(
        name="sumRange",
        args="a: int, b: int",
        ret="int",
        desc="Return the sum of all integers from a to b inclusive, where a <= b.",
        body="""
total = 0
for i in range(a, b + 1):
    total += i
return total""",
        tests=[("1, 4", 10), ("3, 3", 3), ("-2, 2", 0), ("5, 7", 18)],
    ),
    dict(
        name="evenIndices",
        args="nums: List[int]",
        ret="List[int]",
        desc="Return the elements of nums at even indices (0, 2, 4, ...).",
        body="""
return nums[::2]""",
        tests=[("[1, 2, 3, 4, 5]", [1, 3, 5]), ("[]", []), ("[7]", [7]), ("[9, 8]", [9])],
    ),
    dict(
        name="wordLengths",
        args="s: str",
        ret="List[int]",
        desc="Return the length of every word in s, in order. Words are separated by whitespace.",
        body="""
return [len(w) for w in s.split()]""",
        tests=[("'hi there'", [2, 5]), ("''", []), ("'a bb ccc'", [1, 2, 3]), ("'word'", [4])],
    ),
    dict(
        name="isSubsequence",
        args="s: str, t: str",
        ret="bool",
        desc="Return True if s can be obtained from t by deleting some characters without changing the order of the rest.",
        body="""
i = 0
for ch in t:
    if i < len(s) and s[i] == ch:
        i += 1
return i == len(s)""",
        tests=[
            ("'abc', 'ahbgdc'", True),
            ("'axc', 'ahbgdc'", False),
            ("'', 'abc'", True),
            ("'b', ''", False),
        ],
    ),
    dict(
        name="countDigits",
        args="n: int",
        ret="int",
        desc="Return the number of decimal digits of the non-negative integer n.",
        body="""
count = 1
while n >= 10:
    n //= 10
    count += 1
return count""",
        tests=[("0", 1), ("7", 1), ("42", 2), ("1000", 4), ("98765", 5)],
    ),
]
