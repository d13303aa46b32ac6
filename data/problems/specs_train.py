"""Training problems: the source of truth for data/problems/train.jsonl.

Each spec: method `name`, its `args` and `ret` type hints, a 1-3 sentence
`desc`, the method `body` (dedented; becomes the canonical solution) and
`tests`, a list of (argument source text, expected value). Expected values are
written by hand, not computed from `body`, so make_problems.py can catch a
wrong canonical solution.
"""

TRAIN = [
    dict(
        name="sumEvens",
        args="nums: List[int]",
        ret="int",
        desc="Return the sum of the even numbers in nums.",
        body="""
total = 0
for x in nums:
    if x % 2 == 0:
        total += x
return total""",
        tests=[("[1, 2, 3, 4]", 6), ("[]", 0), ("[5, 7]", 0), ("[-2, 3, 8]", 6), ("[10]", 10)],
    ),
    dict(
        name="reverseWords",
        args="s: str",
        ret="str",
        desc="Given a string of words separated by single spaces, return the words in reverse order.",
        body="""
return " ".join(s.split(" ")[::-1])""",
        tests=[
            ("'hello world'", "world hello"),
            ("'a b c'", "c b a"),
            ("'one'", "one"),
            ("'the sky is blue'", "blue is sky the"),
        ],
    ),
    dict(
        name="countVowels",
        args="s: str",
        ret="int",
        desc="Count the vowels (a, e, i, o, u) in s, ignoring case.",
        body="""
count = 0
for ch in s.lower():
    if ch in "aeiou":
        count += 1
return count""",
        tests=[("'hello'", 2), ("'AEIOU'", 5), ("'xyz'", 0), ("''", 0), ("'Banana'", 3)],
    ),
    dict(
        name="runningMax",
        args="nums: List[int]",
        ret="List[int]",
        desc="Return a list where element i is the largest value in nums[0..i].",
        body="""
result = []
best = None
for x in nums:
    if best is None or x > best:
        best = x
    result.append(best)
return result""",
        tests=[
            ("[1, 3, 2, 5]", [1, 3, 3, 5]),
            ("[]", []),
            ("[4, 1, 0]", [4, 4, 4]),
            ("[-3, -1, -2]", [-3, -1, -1]),
        ],
    ),
    dict(
        name="isPalindrome",
        args="s: str",
        ret="bool",
        desc="Return True if s reads the same forwards and backwards.",
        body="""
return s == s[::-1]""",
        tests=[
            ("'racecar'", True),
            ("'abc'", False),
            ("''", True),
            ("'abba'", True),
            ("'ab'", False),
        ],
    ),
    dict(
        name="twoSum",
        args="nums: List[int], target: int",
        ret="List[int]",
        desc="Return the indices [i, j] with i < j of the two numbers in nums that add up to target. Exactly one such pair exists.",
        body="""
seen = {}
for j, x in enumerate(nums):
    if target - x in seen:
        return [seen[target - x], j]
    seen[x] = j
return []""",
        tests=[
            ("[2, 7, 11, 15], 9", [0, 1]),
            ("[3, 2, 4], 6", [1, 2]),
            ("[3, 3], 6", [0, 1]),
            ("[1, 5, 8, 3], 4", [0, 3]),
        ],
    ),
    dict(
        name="maxElement",
        args="nums: List[int]",
        ret="int",
        desc="Return the largest number in the non-empty list nums.",
        body="""
best = nums[0]
for x in nums:
    if x > best:
        best = x
return best""",
        tests=[("[1, 5, 3]", 5), ("[-4, -2, -9]", -2), ("[7]", 7), ("[2, 2, 1]", 2)],
    ),
    dict(
        name="countPositives",
        args="nums: List[int]",
        ret="int",
        desc="Count how many numbers in nums are greater than zero.",
        body="""
return sum(1 for x in nums if x > 0)""",
        tests=[("[1, -2, 3, 0]", 2), ("[]", 0), ("[-1, -5]", 0), ("[4, 4, 4]", 3)],
    ),
    dict(
        name="runningSum",
        args="nums: List[int]",
        ret="List[int]",
        desc="Return the running sum of nums: element i is nums[0] + ... + nums[i].",
        body="""
result = []
total = 0
for x in nums:
    total += x
    result.append(total)
return result""",
        tests=[
            ("[1, 2, 3, 4]", [1, 3, 6, 10]),
            ("[]", []),
            ("[5]", [5]),
            ("[3, -1, 2]", [3, 2, 4]),
        ],
    ),
    dict(
        name="reverseString",
        args="s: str",
        ret="str",
        desc="Return the string s reversed.",
        body="""
return s[::-1]""",
        tests=[("'abc'", "cba"), ("''", ""), ("'hello'", "olleh"), ("'ab cd'", "dc ba")],
    ),
    dict(
        name="capitalizeWords",
        args="s: str",
        ret="str",
        desc="Given words separated by single spaces, return s with the first letter of every word in upper case.",
        body="""
words = s.split(" ")
return " ".join(w[:1].upper() + w[1:] for w in words)""",
        tests=[
            ("'hello world'", "Hello World"),
            ("'a'", "A"),
            ("'python is fun'", "Python Is Fun"),
            ("'Already Done'", "Already Done"),
        ],
    ),
    dict(
        name="fizzBuzz",
        args="n: int",
        ret="List[str]",
        desc="Return the strings for 1..n: 'Fizz' for multiples of 3, 'Buzz' for multiples of 5, 'FizzBuzz' for both, otherwise the number.",
        body="""
result = []
for i in range(1, n + 1):
    word = ("Fizz" if i % 3 == 0 else "") + ("Buzz" if i % 5 == 0 else "")
    result.append(word or str(i))
return result""",
        tests=[
            ("3", ["1", "2", "Fizz"]),
            ("1", ["1"]),
            ("0", []),
            ("5", ["1", "2", "Fizz", "4", "Buzz"]),
            (
                "15",
                [
                    "1",
                    "2",
                    "Fizz",
                    "4",
                    "Buzz",
                    "Fizz",
                    "7",
                    "8",
                    "Fizz",
                    "Buzz",
                    "11",
                    "Fizz",
                    "13",
                    "14",
                    "FizzBuzz",
                ],
            ),
        ],
    ),
    dict(
        name="factorial",
        args="n: int",
        ret="int",
        desc="Return n! for a non-negative integer n.",
        body="""
result = 1
for i in range(2, n + 1):
    result *= i
return result""",
        tests=[("0", 1), ("1", 1), ("5", 120), ("3", 6), ("10", 3628800)],
    ),
    dict(
        name="fibonacci",
        args="n: int",
        ret="int",
        desc="Return the n-th Fibonacci number, where fibonacci(0) = 0 and fibonacci(1) = 1.",
        body="""
a, b = 0, 1
for _ in range(n):
    a, b = b, a + b
return a""",
        tests=[("0", 0), ("1", 1), ("2", 1), ("7", 13), ("10", 55)],
    ),
    dict(
        name="isPrime",
        args="n: int",
        ret="bool",
        desc="Return True if n is a prime number.",
        body="""
if n < 2:
    return False
for d in range(2, int(n ** 0.5) + 1):
    if n % d == 0:
        return False
return True""",
        tests=[("2", True), ("1", False), ("9", False), ("13", True), ("0", False), ("97", True)],
    ),
    dict(
        name="digitSum",
        args="n: int",
        ret="int",
        desc="Return the sum of the decimal digits of the non-negative integer n.",
        body="""
total = 0
while n > 0:
    total += n % 10
    n //= 10
return total""",
        tests=[("123", 6), ("0", 0), ("9", 9), ("1005", 6), ("999", 27)],
    ),
    dict(
        name="countChar",
        args="s: str, c: str",
        ret="int",
        desc="Return how many times the character c appears in s.",
        body="""
count = 0
for ch in s:
    if ch == c:
        count += 1
return count""",
        tests=[("'banana', 'a'", 3), ("'hello', 'z'", 0), ("'', 'a'", 0), ("'aaa', 'a'", 3)],
    ),
    dict(
        name="removeDuplicates",
        args="nums: List[int]",
        ret="List[int]",
        desc="Return nums without duplicates, keeping the first occurrence of each value in order.",
        body="""
seen = set()
result = []
for x in nums:
    if x not in seen:
        seen.add(x)
        result.append(x)
return result""",
        tests=[
            ("[1, 2, 1, 3, 2]", [1, 2, 3]),
            ("[]", []),
            ("[4, 4, 4]", [4]),
            ("[3, 1, 2]", [3, 1, 2]),
        ],
    ),
    dict(
        name="secondLargest",
        args="nums: List[int]",
        ret="int",
        desc="Return the second largest distinct value in nums. nums has at least two distinct values.",
        body="""
values = sorted(set(nums))
return values[-2]""",
        tests=[("[1, 3, 2]", 2), ("[5, 5, 4]", 4), ("[-1, -7, -3]", -3), ("[10, 20]", 10)],
    ),
    dict(
        name="isSorted",
        args="nums: List[int]",
        ret="bool",
        desc="Return True if nums is sorted in non-decreasing order.",
        body="""
for i in range(1, len(nums)):
    if nums[i] < nums[i - 1]:
        return False
return True""",
        tests=[
            ("[1, 2, 2, 5]", True),
            ("[3, 1]", False),
            ("[]", True),
            ("[7]", True),
            ("[1, 3, 2]", False),
        ],
    ),
    dict(
        name="mergeSorted",
        args="a: List[int], b: List[int]",
        ret="List[int]",
        desc="Merge two sorted lists a and b into one sorted list.",
        body="""
result = []
while a and b:
    result.append(a.pop(0) if a[0] <= b[0] else b.pop(0))
return result + a + b""",
        tests=[
            ("[1, 3], [2, 4]", [1, 2, 3, 4]),
            ("[], [1]", [1]),
            ("[5], []", [5]),
            ("[1, 1], [1, 2]", [1, 1, 1, 2]),
        ],
    ),
    dict(
        name="countWords",
        args="s: str",
        ret="int",
        desc="Return the number of words in s. Words are separated by whitespace.",
        body="""
return len(s.split())""",
        tests=[("'hello world'", 2), ("''", 0), ("'  a  b c '", 3), ("'one'", 1)],
    ),
    dict(
        name="longestWord",
        args="s: str",
        ret="str",
        desc="Return the longest word in s (words separated by single spaces). If several are longest, return the first.",
        body="""
best = ""
for w in s.split(" "):
    if len(w) > len(best):
        best = w
return best""",
        tests=[
            ("'a quick fox'", "quick"),
            ("'hi'", "hi"),
            ("'ab cd ef'", "ab"),
            ("'cat elephant dog'", "elephant"),
        ],
    ),
    dict(
        name="isAnagram",
        args="s: str, t: str",
        ret="bool",
        desc="Return True if t is an anagram of s (same letters, same counts).",
        body="""
return sorted(s) == sorted(t)""",
        tests=[
            ("'listen', 'silent'", True),
            ("'rat', 'car'", False),
            ("'', ''", True),
            ("'aab', 'abb'", False),
        ],
    ),
    dict(
        name="missingNumber",
        args="nums: List[int]",
        ret="int",
        desc="nums holds n distinct numbers from 0..n with exactly one missing. Return the missing number.",
        body="""
n = len(nums)
return n * (n + 1) // 2 - sum(nums)""",
        tests=[("[3, 0, 1]", 2), ("[0, 1]", 2), ("[1]", 0), ("[4, 2, 0, 1]", 3)],
    ),
    dict(
        name="singleNumber",
        args="nums: List[int]",
        ret="int",
        desc="Every value in nums appears twice except one. Return the value that appears once.",
        body="""
result = 0
for x in nums:
    result ^= x
return result""",
        tests=[("[2, 2, 1]", 1), ("[4, 1, 2, 1, 2]", 4), ("[7]", 7), ("[3, 5, 3]", 5)],
    ),
    dict(
        name="majorityElement",
        args="nums: List[int]",
        ret="int",
        desc="Return the value that appears more than len(nums) // 2 times in nums.",
        body="""
counts = {}
for x in nums:
    counts[x] = counts.get(x, 0) + 1
    if counts[x] > len(nums) // 2:
        return x
return -1""",
        tests=[("[3, 2, 3]", 3), ("[2, 2, 1, 1, 2]", 2), ("[5]", 5), ("[1, 4, 4]", 4)],
    ),
    dict(
        name="moveZeroes",
        args="nums: List[int]",
        ret="List[int]",
        desc="Return nums with all zeros moved to the end, keeping the order of the other values.",
        body="""
rest = [x for x in nums if x != 0]
return rest + [0] * (len(nums) - len(rest))""",
        tests=[
            ("[0, 1, 0, 3]", [1, 3, 0, 0]),
            ("[0]", [0]),
            ("[1, 2]", [1, 2]),
            ("[0, 0, 5]", [5, 0, 0]),
        ],
    ),
    dict(
        name="rotateLeft",
        args="nums: List[int], k: int",
        ret="List[int]",
        desc="Return the non-empty list nums rotated left by k positions.",
        body="""
k = k % len(nums)
return nums[k:] + nums[:k]""",
        tests=[
            ("[1, 2, 3, 4], 1", [2, 3, 4, 1]),
            ("[1, 2, 3], 3", [1, 2, 3]),
            ("[5, 6], 3", [6, 5]),
            ("[1, 2, 3, 4, 5], 2", [3, 4, 5, 1, 2]),
        ],
    ),
    dict(
        name="containsDuplicate",
        args="nums: List[int]",
        ret="bool",
        desc="Return True if any value appears at least twice in nums.",
        body="""
return len(set(nums)) < len(nums)""",
        tests=[("[1, 2, 3, 1]", True), ("[1, 2, 3]", False), ("[]", False), ("[7, 7]", True)],
    ),
    dict(
        name="maxProfit",
        args="prices: List[int]",
        ret="int",
        desc="prices[i] is a stock price on day i. Return the best profit from buying on one day and selling on a later day, or 0.",
        body="""
best = 0
low = None
for p in prices:
    if low is None or p < low:
        low = p
    best = max(best, p - low)
return best""",
        tests=[("[7, 1, 5, 3, 6, 4]", 5), ("[7, 6, 4, 3, 1]", 0), ("[]", 0), ("[2, 4, 1, 3]", 2)],
    ),
    dict(
        name="sortedSquares",
        args="nums: List[int]",
        ret="List[int]",
        desc="Return the squares of the numbers in nums, sorted in increasing order.",
        body="""
return sorted(x * x for x in nums)""",
        tests=[
            ("[-4, -1, 0, 3]", [0, 1, 9, 16]),
            ("[]", []),
            ("[2, 3]", [4, 9]),
            ("[-3, 2]", [4, 9]),
        ],
    ),
    dict(
        name="product",
        args="nums: List[int]",
        ret="int",
        desc="Return the product of all numbers in nums. The product of an empty list is 1.",
        body="""
result = 1
for x in nums:
    result *= x
return result""",
        tests=[("[2, 3, 4]", 24), ("[]", 1), ("[5, 0, 2]", 0), ("[-2, 3]", -6)],
    ),
    dict(
        name="minIndex",
        args="nums: List[int]",
        ret="int",
        desc="Return the index of the smallest value in the non-empty list nums (the first one if it appears more than once).",
        body="""
best = 0
for i in range(1, len(nums)):
    if nums[i] < nums[best]:
        best = i
return best""",
        tests=[("[3, 1, 2]", 1), ("[5]", 0), ("[2, 0, 0]", 1), ("[4, 3, 2, 1]", 3)],
    ),
    dict(
        name="toBinary",
        args="n: int",
        ret="str",
        desc="Return the binary representation of the non-negative integer n, without a prefix.",
        body="""
if n == 0:
    return "0"
bits = ""
while n > 0:
    bits = str(n % 2) + bits
    n //= 2
return bits""",
        tests=[("5", "101"), ("0", "0"), ("1", "1"), ("8", "1000"), ("10", "1010")],
    ),
    dict(
        name="gcd",
        args="a: int, b: int",
        ret="int",
        desc="Return the greatest common divisor of the positive integers a and b.",
        body="""
while b:
    a, b = b, a % b
return a""",
        tests=[("12, 8", 4), ("7, 3", 1), ("10, 10", 10), ("6, 18", 6)],
    ),
    dict(
        name="isPowerOfTwo",
        args="n: int",
        ret="bool",
        desc="Return True if n is a power of two (1, 2, 4, 8, ...).",
        body="""
if n < 1:
    return False
while n % 2 == 0:
    n //= 2
return n == 1""",
        tests=[("1", True), ("16", True), ("12", False), ("0", False), ("3", False)],
    ),
    dict(
        name="firstUnique",
        args="s: str",
        ret="int",
        desc="Return the index of the first character in s that appears only once, or -1 if there is none.",
        body="""
for i, ch in enumerate(s):
    if s.count(ch) == 1:
        return i
return -1""",
        tests=[("'leetcode'", 0), ("'loveleetcode'", 2), ("'aabb'", -1), ("''", -1)],
    ),
    dict(
        name="compress",
        args="s: str",
        ret="str",
        desc="Compress runs of equal characters: 'aaabb' becomes 'a3b2'. Every run is written as the character and its length.",
        body="""
result = ""
i = 0
while i < len(s):
    j = i
    while j < len(s) and s[j] == s[i]:
        j += 1
    result += s[i] + str(j - i)
    i = j
return result""",
        tests=[("'aaabb'", "a3b2"), ("''", ""), ("'abc'", "a1b1c1"), ("'zzzz'", "z4")],
    ),
    dict(
        name="flatten",
        args="lists: List[List[int]]",
        ret="List[int]",
        desc="Return one list with the elements of all the inner lists, in order.",
        body="""
result = []
for inner in lists:
    result.extend(inner)
return result""",
        tests=[
            ("[[1, 2], [3], []]", [1, 2, 3]),
            ("[]", []),
            ("[[5]]", [5]),
            ("[[], [4, 4]]", [4, 4]),
        ],
    ),
    dict(
        name="chunk",
        args="nums: List[int], k: int",
        ret="List[List[int]]",
        desc="Split nums into consecutive pieces of length k; the last piece may be shorter.",
        body="""
return [nums[i:i + k] for i in range(0, len(nums), k)]""",
        tests=[
            ("[1, 2, 3, 4, 5], 2", [[1, 2], [3, 4], [5]]),
            ("[], 3", []),
            ("[1, 2], 5", [[1, 2]]),
            ("[1, 2, 3], 1", [[1], [2], [3]]),
        ],
    ),
    dict(
        name="alternateSum",
        args="nums: List[int]",
        ret="int",
        desc="Return nums[0] - nums[1] + nums[2] - nums[3] + ...",
        body="""
total = 0
for i, x in enumerate(nums):
    if i % 2 == 0:
        total += x
    else:
        total -= x
return total""",
        tests=[("[5, 2, 1]", 4), ("[]", 0), ("[3]", 3), ("[1, 2, 3, 4]", -2)],
    ),
    dict(
        name="countUpper",
        args="s: str",
        ret="int",
        desc="Count the upper-case letters in s.",
        body="""
return sum(1 for ch in s if ch.isupper())""",
        tests=[("'Hello World'", 2), ("'abc'", 0), ("'ABC'", 3), ("''", 0)],
    ),
    dict(
        name="titleToNumber",
        args="column: str",
        ret="int",
        desc="Return the column number of a spreadsheet column title: 'A' is 1, 'Z' is 26, 'AA' is 27.",
        body="""
result = 0
for ch in column:
    result = result * 26 + ord(ch) - ord("A") + 1
return result""",
        tests=[("'A'", 1), ("'Z'", 26), ("'AB'", 28), ("'ZY'", 701)],
    ),
    dict(
        name="average",
        args="nums: List[int]",
        ret="float",
        desc="Return the average of the non-empty list nums as a float.",
        body="""
return sum(nums) / len(nums)""",
        tests=[("[1, 2, 3, 4]", 2.5), ("[5]", 5.0), ("[2, 2]", 2.0), ("[-1, 1, 3]", 1.0)],
    ),
    dict(
        name="clamp",
        args="nums: List[int], lo: int, hi: int",
        ret="List[int]",
        desc="Return nums with every value below lo replaced by lo and every value above hi replaced by hi.",
        body="""
return [min(max(x, lo), hi) for x in nums]""",
        tests=[
            ("[1, 5, 10], 2, 8", [2, 5, 8]),
            ("[], 0, 1", []),
            ("[3, 4], 0, 9", [3, 4]),
            ("[-5, 5], -1, 1", [-1, 1]),
        ],
    ),
    dict(
        name="countSubstring",
        args="s: str, sub: str",
        ret="int",
        desc="Return how many non-overlapping times the non-empty string sub occurs in s.",
        body="""
return s.count(sub)""",
        tests=[
            ("'abcabc', 'abc'", 2),
            ("'aaaa', 'aa'", 2),
            ("'hello', 'z'", 0),
            ("'banana', 'an'", 2),
        ],
    ),
    dict(
        name="lengthOfLastWord",
        args="s: str",
        ret="int",
        desc="Return the length of the last word in s. Words are separated by spaces; s contains at least one word.",
        body="""
return len(s.split()[-1])""",
        tests=[
            ("'Hello World'", 5),
            ("'  fly me   to   the moon  '", 4),
            ("'a'", 1),
            ("'joy is here'", 4),
        ],
    ),
    dict(
        name="plusOne",
        args="digits: List[int]",
        ret="List[int]",
        desc="digits holds the decimal digits of a non-negative number, most significant first. Return the digits of that number plus one.",
        body="""
n = 0
for d in digits:
    n = n * 10 + d
return [int(ch) for ch in str(n + 1)]""",
        tests=[("[1, 2, 3]", [1, 2, 4]), ("[9]", [1, 0]), ("[0]", [1]), ("[1, 9, 9]", [2, 0, 0])],
    ),
    dict(
        name="sumMultiples",
        args="n: int",
        ret="int",
        desc="Return the sum of all numbers from 1 to n that are multiples of 3 or 5.",
        body="""
total = 0
for i in range(1, n + 1):
    if i % 3 == 0 or i % 5 == 0:
        total += i
return total""",
        tests=[("10", 33), ("1", 0), ("5", 8), ("15", 60)],
    ),
]
